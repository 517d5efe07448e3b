// The one mapping from the domain's refusals to HTTP, for every route: the central error handler and
// the forms that show a refusal on their own page.
import type { DomainError } from '../domain/shared/errors.ts';

const statuses = { invalid: 400, not_found: 404, refused: 409, insufficient_funds: 409 } as const satisfies Record<
  DomainError['code'],
  number
>;

/** 400 for input that is wrong, 404 for something that is not there, 409 for a refusal of the state it is in. */
export const httpStatusOf = (error: DomainError): 400 | 404 | 409 => statuses[error.code];
