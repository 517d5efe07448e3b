// Runs the ledger's reactions (ending vanished capsuls' charges, deletion scheduling, placement) every few seconds and right after
// anything that may have given them work; one round at a time.
import { react, type ReactorDeps } from '../ledger/reactor.ts';
import { Serial } from '../core/serial.ts';

export class ReactorLoop {
  private timer: NodeJS.Timeout | undefined;
  private readonly rounds: Serial;

  constructor(
    deps: ReactorDeps,
    private readonly intervalMs = 2000,
  ) {
    this.rounds = new Serial(
      'reactions',
      () => react(deps),
      (line) => deps.log?.(line),
    );
  }

  start(): void {
    this.timer = setInterval(() => this.poke(), this.intervalMs);
    this.poke();
  }

  /** Asks for a round soon; rounds never overlap. */
  poke(): void {
    this.rounds.poke();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.rounds.stop();
  }
}
