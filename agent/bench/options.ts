/**
 * The micro benchmark's options, one schema for the CLI and the HTTP API. Field names follow the
 * CLI flags (issue contract): iterations, binary, args, warmup, condition, label.
 */
import { z } from 'zod'

import { allowedBinaries, binaryProblem } from '../allowlist.ts'
import type { Inventory } from '../inventory.ts'
import type { KnownTool } from '../tools/types.ts'

export const CONDITIONS = ['baseline', 'no-policy', 'policy'] as const

export const microOptionsSchema = z
  .object({
    iterations: z.number().int().min(1).max(1_000_000).default(10_000),
    binary: z
      .string()
      .min(1, 'expected an absolute path, got an empty string')
      .default('/usr/bin/ls'),
    args: z
      .array(
        z
          .string()
          .max(4096)
          .refine((s) => !s.includes('\0'), 'must not contain NUL')
      )
      .max(64)
      .default([]),
    warmup: z.number().int().min(0).max(100_000).default(100),
    condition: z.enum(CONDITIONS).nullable().default(null),
    label: z
      .string()
      .max(200)
      .refine((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s), 'must not contain control characters')
      .nullable()
      .default(null),
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

/** Known tools whose programs are loaded now: a baseline run must have none. */
export function toolsLoaded(inv: Inventory): Array<{ tool: KnownTool; programs: string[] }> {
  const found = new Map<KnownTool, string[]>()
  for (const p of inv.programs) {
    if (p.tool === 'other') continue
    found.set(p.tool, [...(found.get(p.tool) ?? []), p.fullName])
  }
  return [...found.entries()].map(([tool, programs]) => ({ tool, programs }))
}

/** Why a baseline cannot be taken now, naming the tools found; null when it can. */
export function baselineProblem(inv: Inventory, forceHint: string): string | null {
  const found = toolsLoaded(inv)
  if (!found.length) return null
  const list = found
    .map((f) => `${f.tool} (${f.programs.length} programs, e.g. ${f.programs[0]})`)
    .join(', ')
  return `a baseline needs no security tool loaded, but found ${list}; stop it, or pass ${forceHint}`
}
