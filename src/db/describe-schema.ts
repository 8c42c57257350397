import { sql } from 'kysely';
import type { Db } from './schema.js';

/**
 * A deterministic description of the public schema (columns, constraints, indexes), used to prove
 * both engines end with the same schema after the same migrations.
 */
export async function describeSchema(db: Db): Promise<Record<string, unknown>> {
  const columns = await sql<Record<string, string>>`
    SELECT table_name, column_name, data_type, udt_name, is_nullable, coalesce(column_default, '') AS column_default
    FROM information_schema.columns WHERE table_schema = 'public'
    ORDER BY table_name, column_name`.execute(db);
  const constraints = await sql<Record<string, string>>`
    SELECT c.relname AS table_name, k.conname AS name, k.contype::text AS kind, pg_get_constraintdef(k.oid) AS definition
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    -- contype 'n' (NOT NULL as a constraint) exists only from PostgreSQL 18 (PGlite); the columns
    -- already say NOT NULL, so it is left out to compare like with like.
    WHERE n.nspname = 'public' AND k.contype::text <> 'n'
    ORDER BY c.relname, k.conname`.execute(db);
  const indexes = await sql<Record<string, string>>`
    SELECT tablename AS table_name, indexname AS name, indexdef AS definition
    FROM pg_indexes WHERE schemaname = 'public'
    ORDER BY tablename, indexname`.execute(db);
  const tables: Record<string, { columns: string[]; constraints: string[]; indexes: string[] }> = {};
  const table = (name: string) => {
    tables[name] ??= { columns: [], constraints: [], indexes: [] };
    return tables[name];
  };
  for (const c of columns.rows) {
    table(c.table_name!).columns.push(
      `${c.column_name} ${c.data_type === 'ARRAY' ? `${c.udt_name}` : c.data_type}${c.is_nullable === 'NO' ? ' NOT NULL' : ''}${c.column_default ? ` DEFAULT ${c.column_default}` : ''}`,
    );
  }
  for (const k of constraints.rows)
    table(k.table_name!).constraints.push(`${k.name} ${k.kind} ${k.definition}`);
  for (const i of indexes.rows) table(i.table_name!).indexes.push(i.definition!);
  return tables;
}
