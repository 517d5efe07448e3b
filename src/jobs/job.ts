// What every scheduled job is handed for one run.
export type JobRun = {
  /** evaluate as of this instant (dry runs only); default: the clock */
  asOf?: Date;
  /** report what would be done, change nothing, send nothing */
  dryRun: boolean;
  /** what was done, or would be done: one line each */
  report: (line: string) => void;
  /** trouble worth an operator's attention */
  log: (line: string) => void;
};
