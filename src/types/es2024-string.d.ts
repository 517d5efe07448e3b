// Node 20 has ES2024's String.prototype.isWellFormed and toWellFormed; the TypeScript lib this project
// targets (ES2022) does not list them yet.
interface String {
  isWellFormed(): boolean;
  toWellFormed(): string;
}
