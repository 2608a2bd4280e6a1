/**
 * The micro benchmark's options, one schema for the CLI and the HTTP API. Field names follow the
 * CLI flags (issue contract): iterations, binary, args, warmup, condition, label.
 */
import { z } from 'zod'

import { allowedBinaries, binaryProblem } from '../allowlist.ts'

export const CONDITIONS = ['baseline', 'no-policy', 'policy'] as const

export const microOptionsSchema = z
  .object({
    iterations: z.number().int().min(1).max(1_000_000).default(10_000),
    binary: z.string().min(1).default('/usr/bin/ls'),
    args: z.array(z.string().max(4096).refine((s) => !s.includes('\0'), 'must not contain NUL')).max(64).default([]),
    warmup: z.number().int().min(0).max(100_000).default(100),
    condition: z.enum(CONDITIONS).nullable().default(null),
    label: z.string().max(200).nullable().default(null),
    force: z.boolean().default(false),
  })
  .strict()

export type MicroOptions = z.infer<typeof microOptionsSchema>

/** The schema with the binary checked against an allowlist. */
export function microOptionsWithAllowlist(allowed: string[] = allowedBinaries()) {
  return microOptionsSchema.superRefine((o, ctx) => {
    const problem = binaryProblem(o.binary, allowed)
    if (problem) ctx.addIssue({ code: 'custom', path: ['binary'], message: problem })
  })
}
