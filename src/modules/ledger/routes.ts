import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, listOf, pageQuery, toPage } from '../../http/pagination.js';
import { problemDto, problemResponses, timestamp } from '../../http/schemas.js';
import { isoSeconds } from '../../kernel/clock.js';
import { DomainError } from '../../kernel/errors.js';
import { exactJson } from '../../kernel/exact-json.js';
import { grants } from '../api-keys/scopes.js';
import { CHART } from './domain/chart.js';
import { type Account, type LedgerService, type LedgerTransaction, VERIFY_TIMEOUT_MS } from './service.js';
import type { AccountType } from './tables.js';

/**
 * A sum of postings: an exact JSON integer of any size. It may exceed 2^53 (a large ledger in a
 * twelve-digit currency), so clients that total ledgers should parse it as a big integer. The
 * handler gives a bigint, written by `exactJson` (the routes below use it as their serializer).
 */
const exactSum = z.number().meta({
  type: 'integer',
  description: 'Exact integer in minor units; may exceed 2^53 (parse as a big integer)',
}) as unknown as z.ZodType<number | bigint>;
const exactSerializer = { serializerCompiler: () => exactJson };

const accountDto = z.object({
  id: z.string(),
  code: z.string().describe('type:owner:currency'),
  type: z.string(),
  owner: z.string().nullable(),
  currency: z.string(),
  normalSide: z.enum(['debit', 'credit']),
  debits: exactSum,
  credits: exactSum,
  balance: exactSum.describe('In the normal direction of the account'),
});
export const transactionDto = z
  .object({
    id: z.string(),
    idempotencyKey: z.string(),
    reference: z.string().nullable(),
    description: z.string().nullable(),
    reverses: z.string().nullable(),
    effectiveAt: timestamp,
    createdAt: timestamp,
    postings: z.array(
      z.object({
        account: z.string(),
        currency: z.string(),
        debit: z.number().int(),
        credit: z.number().int(),
      }),
    ),
  })
  .meta({ id: 'LedgerTransaction' });
const trialBalanceDto = z.object({
  currencies: z.array(
    z.object({
      currency: z.string(),
      debits: exactSum,
      credits: exactSum,
      balanced: z.boolean(),
    }),
  ),
  verified: z.boolean().describe('Whether the running balances were also recomputed from every posting'),
});

const toAccountDto = (a: Account): z.infer<typeof accountDto> => ({
  id: a.id,
  code: a.code,
  type: a.type,
  owner: a.owner,
  currency: a.currency,
  normalSide: a.normalSide,
  debits: a.debitsMinor,
  credits: a.creditsMinor,
  balance: a.balanceMinor,
});
export const toTransactionDto = (t: LedgerTransaction): z.infer<typeof transactionDto> => ({
  id: t.id,
  idempotencyKey: t.idempotencyKey,
  reference: t.reference,
  description: t.description,
  reverses: t.reverses,
  effectiveAt: isoSeconds(t.effectiveAt),
  createdAt: isoSeconds(t.createdAt),
  postings: t.postings.map((p) => ({
    account: p.account,
    currency: p.currency,
    debit: p.debitMinor,
    credit: p.creditMinor,
  })),
});

export function ledgerRoutes(app: FastifyInstance, deps: { ledger: LedgerService }) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const tags = ['Ledger'];
  const types = Object.keys(CHART) as [AccountType, ...AccountType[]];

  r.get(
    '/v1/ledger/accounts',
    {
      schema: {
        tags,
        summary: 'Accounts of the chart with their running balances',
        querystring: pageQuery.extend({
          type: z.enum(types).optional(),
          owner: z.string().max(100).optional(),
          currency: z
            .string()
            .regex(/^[A-Z]{3}$/)
            .optional(),
        }),
        response: { 200: listOf(accountDto), ...problemResponses },
      },
      ...exactSerializer,
      config: { scope: 'ledger:read' },
    },
    async (req) => {
      const { limit, cursor, ...filter } = req.query;
      return toPage(
        await deps.ledger.listAccounts({ ...filter, limit, after: decodeCursor(cursor) }),
        limit,
        toAccountDto,
      );
    },
  );
  r.get(
    '/v1/ledger/transactions',
    {
      schema: {
        tags,
        summary: 'Ledger transactions, oldest first, optionally of one reference (pay_…, re_…, inv_…)',
        querystring: pageQuery.extend({ reference: z.string().min(1).max(100).optional() }),
        response: { 200: listOf(transactionDto), ...problemResponses },
      },
      config: { scope: 'ledger:read' },
    },
    async (req) =>
      toPage(
        await deps.ledger.listTransactions({
          reference: req.query.reference,
          limit: req.query.limit,
          after: decodeCursor(req.query.cursor),
        }),
        req.query.limit,
        toTransactionDto,
      ),
  );
  r.get(
    '/v1/ledger/trial-balance',
    {
      schema: {
        tags,
        summary: 'Debits and credits per currency: always equal',
        querystring: z.object({
          verify: z
            .enum(['true', 'false'])
            .default('false')
            .describe(
              `Also recompute from every posting: a full scan, so it needs the 'admin' scope and stops after ${VERIFY_TIMEOUT_MS / 1000} s (503)`,
            ),
        }),
        response: {
          200: trialBalanceDto,
          ...problemResponses,
          503: problemDto.describe('service_unavailable: verification took too long'),
        },
      },
      ...exactSerializer,
      config: { scope: 'ledger:read' },
    },
    async (req) => {
      const verify = req.query.verify === 'true';
      // A full scan of the postings is not for every reader: one key could keep the database busy.
      if (verify && !grants(req.principal?.scopes ?? [], 'admin')) {
        throw new DomainError('forbidden', "Verifying the trial balance needs the 'admin' scope.", {
          extra: { requiredScope: 'admin' },
        });
      }
      const lines = await deps.ledger.trialBalance({ verify });
      return {
        currencies: lines.map((l) => ({
          currency: l.currency,
          debits: l.debitsMinor,
          credits: l.creditsMinor,
          balanced: l.balanced,
        })),
        verified: verify,
      };
    },
  );
}
