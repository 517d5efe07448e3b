// Rounds of work that never overlap (the reactions, the scheduled jobs, sealing the audit log, the
// database watch): the one home for coalescing rounds. A poke asks for a round that starts after it; any
// number of pokes during a round ask for one more, since that round sees what all of them were about.
// Not built on p-limit, which is a limiter and runs every call it is given (ten pokes, ten rounds):
// coalescing on top of it would mean peeking at its queue, longer and less plain than these lines.
// To bound how many things run at once, use p-limit (the spoke's operation slots and capsul turns).
/** One round at a time; a poke during a round asks for one more after it. */
export class Serial {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  /** `what` names the work in the one line logged when a round fails (the next poke tries again). */
  constructor(
    private readonly what: string,
    private readonly round: () => Promise<void>,
    private readonly log: (line: string) => void,
  ) {}

  poke(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.round()
      .catch((error) => this.log(`${this.what} failed, will retry: ${(error as Error).message}`))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.poke();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}
