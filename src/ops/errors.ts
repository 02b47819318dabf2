// The catalogue of errors a user or operator can meet, each with a stable code. Modules throw
// TorusError with one of these codes; the API maps them to HTTP statuses with CircleCI's {message}.

export const ERROR_CODES = {
  TORUS_E_SCHEMA_NEWER: 500,
  TORUS_E_CONFIG_INVALID: 400,
  TORUS_E_BAD_REQUEST: 400,
  TORUS_E_UNAUTHORIZED: 401,
  TORUS_E_FORBIDDEN: 403,
  TORUS_E_NOT_FOUND: 404,
  TORUS_E_CONFLICT: 409,
  TORUS_E_LEASE_LOST: 409,
  TORUS_E_VCS: 400,
  TORUS_E_SETTINGS: 500,
  /** a store_test_results file is not JUnit XML (the step fails, naming the file) */
  TORUS_E_TEST_RESULTS_INVALID: 400,
  /** the server is shutting down or not ready; retry later */
  TORUS_E_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class TorusError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'TorusError';
    this.status = ERROR_CODES[code];
  }
}

export function isTorusError(err: unknown): err is TorusError {
  return err instanceof TorusError;
}
