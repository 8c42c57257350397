import { describe, expect, it } from 'vitest';
import { DomainError } from '../../src/kernel/errors.js';
import { CompensationFailedError, type Step, Workflow } from '../../src/workflows/runner.js';

interface Ctx {
  log: string[];
}

const step = <I, O>(name: string, invoke: (input: I) => O, undo = true): Step<I, O, Ctx> => ({
  name,
  invoke: async (input, ctx) => {
    ctx.log.push(`invoke ${name}`);
    return invoke(input);
  },
  ...(undo
    ? {
        compensate: async (output: O, ctx: Ctx) => {
          ctx.log.push(`compensate ${name} ${JSON.stringify(output)}`);
        },
      }
    : {}),
});

describe('workflow runner', () => {
  it('runs the steps in order, each on the previous output', async () => {
    const wf = Workflow.of<number, Ctx>('math')
      .step(step('double', (n: number) => n * 2))
      .step(step('describe', (n: number) => `got ${n}`));
    const ctx = { log: [] };
    expect(await wf.run(21, ctx)).toBe('got 42');
    expect(ctx.log).toEqual(['invoke double', 'invoke describe']);
    expect(wf.stepNames).toEqual(['double', 'describe']);
  });

  it('on failure, compensates the completed steps in reverse with their outputs, then rethrows the error as is', async () => {
    const failure = new DomainError('invalid_state', 'no');
    const wf = Workflow.of<number, Ctx>('failing')
      .step(step('a', (n: number) => n + 1))
      .step(step('b', (n: number) => ({ n }), false))
      .step(step('c', (x: { n: number }) => x.n * 10))
      .step(
        step('boom', (): number => {
          throw failure;
        }),
      );
    const ctx = { log: [] as string[] };
    await expect(wf.run(1, ctx)).rejects.toBe(failure);
    expect(ctx.log).toEqual([
      'invoke a',
      'invoke b',
      'invoke c',
      'invoke boom',
      'compensate c 20',
      'compensate a 2',
    ]);
  });

  it('a compensation that fails is reported with the original error as cause, after the others ran', async () => {
    const failure = new Error('step failed');
    const wf = Workflow.of<number, Ctx>('messy')
      .step(step('a', (n: number) => n))
      .step({
        name: 'b',
        invoke: async (n: number) => n,
        compensate: async () => {
          throw new Error('cannot undo b');
        },
      })
      .step(
        step('c', (): number => {
          throw failure;
        }),
      );
    const ctx = { log: [] as string[] };
    const error = await wf.run(5, ctx).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CompensationFailedError);
    expect((error as CompensationFailedError).failures.map((f) => f.step)).toEqual(['b']);
    expect((error as CompensationFailedError).cause).toBe(failure);
    expect(ctx.log).toContain('compensate a 5');
  });

  it('is immutable: adding a step makes a new workflow', () => {
    const base = Workflow.of<number, Ctx>('base').step(step('a', (n: number) => n));
    const longer = base.step(step('b', (n: number) => n));
    expect(base.stepNames).toEqual(['a']);
    expect(longer.stepNames).toEqual(['a', 'b']);
  });
});
