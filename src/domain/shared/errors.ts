/** A command the domain refuses; `message` is one line fit to show the user or operator as is. */
export class DomainError extends Error {
  constructor(
    readonly code: 'invalid' | 'not_found' | 'refused' | 'insufficient_funds',
    message: string,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const invalid = (message: string) => new DomainError('invalid', message);
export const notFound = (message: string) => new DomainError('not_found', message);
export const refused = (message: string) => new DomainError('refused', message);
