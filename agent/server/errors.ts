/** The API's one error shape: `{error: {message, issues: [{code, path, message}]}}`. */
import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { z } from 'zod'

export interface ApiIssue {
  code: string
  path: Array<string | number>
  message: string
}

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly issues: ApiIssue[] = []
  ) {
    super(message)
  }
}

export function zodIssues(error: z.ZodError): ApiIssue[] {
  return error.issues.flatMap((i): ApiIssue[] => {
    const path = i.path.map((p) => (typeof p === 'symbol' ? String(p) : p))
    // one issue per unknown field, each naming it in its path
    if (i.code === 'unrecognized_keys') {
      return i.keys.map((k) => ({
        code: i.code,
        path: [...path, k],
        message: `unknown field '${k}'`,
      }))
    }
    return [{ code: i.code, path, message: i.message }]
  })
}

/** One sentence naming the fields, for the top-level message. */
export function issuesMessage(what: string, issues: ApiIssue[]): string {
  const parts = issues.map((i) => `${i.path.length ? i.path.join('.') : '(body)'}: ${i.message}`)
  return `invalid ${what}: ${parts.join('; ')}`
}

export function errorResponse(c: Context, err: ApiError) {
  return c.json({ error: { message: err.message, issues: err.issues } }, err.status)
}
