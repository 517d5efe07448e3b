// The one clock. Code that needs the time takes a Clock from whoever composed it (src/server.ts for the
// hub, the CLI's context for a command, a test's fake clock), so a process reads the time one way.
export type Clock = () => Date;

/** The machine's clock: what the composition roots hand down in production. */
export const systemClock: Clock = () => new Date();
