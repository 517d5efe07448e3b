// Runs the ledger's reactions (placement, deletion scheduling) every few seconds and right after
// anything that may have given them work; one round at a time.
import { react, type ReactorDeps } from '../ledger/reactor.ts';

export class ReactorLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly deps: ReactorDeps, private readonly intervalMs = 2000) {}

  start(): void {
    this.timer = setInterval(() => this.poke(), this.intervalMs);
    this.poke();
  }

  /** Asks for a round soon; rounds never overlap. */
  poke(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = react(this.deps)
      .catch((error) => this.deps.log?.(`reactions failed, will retry: ${(error as Error).message}`))
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
    clearInterval(this.timer);
    await this.running;
  }
}
