// Rounds of work that never overlap: the reactions, the scheduled jobs.
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
