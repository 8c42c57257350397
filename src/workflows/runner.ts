import { assert } from '../kernel/assert.js';

/**
 * Workflows of steps, each paired with its compensation (Medusa's pattern). A step returns what
 * its compensation needs; when a later step throws, the compensations of the steps that completed
 * run in reverse order, then the error is rethrown unchanged (so a DomainError keeps its code).
 *
 * Transactions: the runner opens none. A step that only calls the outside world (a provider) runs
 * outside any database transaction; a step that writes opens its own short transaction, or runs
 * its writes through a function of the context (e.g. `commit`: the HTTP unit of work, which also
 * stores the audit entry and the idempotent response). A step never holds a transaction while it
 * waits on a provider (ADR 0009).
 */
export interface Step<I, O, C> {
  readonly name: string;
  invoke(input: I, ctx: C): Promise<O>;
  /** Undoes the step's effect, given its output. Absent: nothing to undo, or undone by convergence. */
  compensate?(output: O, ctx: C): Promise<void>;
}

/** Steps per workflow: a longer list is a design smell, not a use case. */
export const WORKFLOW_STEPS_MAX = 32;

/** A step failed and so did compensating an earlier one: state needs an operator (a bug or an outage). */
export class CompensationFailedError extends Error {
  constructor(
    readonly workflow: string,
    readonly failedStep: string,
    readonly failures: Array<{ step: string; error: unknown }>,
    cause: unknown,
  ) {
    super(
      `workflow ${workflow}: step ${failedStep} failed, and compensating ${failures.map((f) => f.step).join(', ')} failed too`,
      { cause },
    );
    this.name = 'CompensationFailedError';
  }
}

/** A step of any input and output: `step()` chains them type-safely, the runner passes values along. */
type AnyStep<C> = Step<never, unknown, C>;

export class Workflow<I, O, C> {
  readonly #steps: ReadonlyArray<AnyStep<C>>;

  private constructor(
    readonly name: string,
    steps: ReadonlyArray<AnyStep<C>>,
  ) {
    assert(steps.length <= WORKFLOW_STEPS_MAX, `workflow ${name} has more than ${WORKFLOW_STEPS_MAX} steps`);
    this.#steps = steps;
  }

  /** An empty workflow taking `I`; add steps with `step`. */
  static of<I, C>(name: string): Workflow<I, I, C> {
    return new Workflow<I, I, C>(name, []);
  }

  /** A new workflow: these steps, then `step` on the output of the last one. */
  step<N>(step: Step<O, N, C>): Workflow<I, N, C> {
    return new Workflow<I, N, C>(this.name, [...this.#steps, step as unknown as AnyStep<C>]);
  }

  get stepNames(): string[] {
    return this.#steps.map((s) => s.name);
  }

  async run(input: I, ctx: C): Promise<O> {
    const done: Array<{ step: AnyStep<C>; output: unknown }> = [];
    let value: unknown = input;
    for (const step of this.#steps) {
      try {
        value = await step.invoke(value as never, ctx);
      } catch (error) {
        const failures: Array<{ step: string; error: unknown }> = [];
        for (const { step: prior, output } of done.reverse()) {
          if (!prior.compensate) continue;
          try {
            await prior.compensate(output, ctx);
          } catch (compensationError) {
            failures.push({ step: prior.name, error: compensationError });
          }
        }
        if (failures.length > 0) throw new CompensationFailedError(this.name, step.name, failures, error);
        throw error;
      }
      done.push({ step, output: value });
    }
    return value as O;
  }
}
