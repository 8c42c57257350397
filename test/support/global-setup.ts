import pg from 'pg';

/**
 * With DATABASE_URL set, every test file gets a database of its own on that server, named after
 * this run; teardown drops whatever this run created. Without it, tests use in-memory PGlite.
 */
export async function setup(): Promise<() => Promise<void>> {
  const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  process.env.REPRISE_TEST_RUN = runId;
  const url = process.env.DATABASE_URL;
  return async () => {
    if (!url) return;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE datname LIKE $1',
        [`reprise_t_${runId}_%`],
      );
      for (const row of rows) await client.query(`DROP DATABASE IF EXISTS "${row.datname}" WITH (FORCE)`);
    } finally {
      await client.end();
    }
  };
}
