/** Small statistics used across the agent. */

/** Quantiles by linear interpolation between closest ranks (type 7, as R and numpy default). */
export function quantiles(values: ArrayLike<number>, qs: number[]): number[] {
  const n = values.length
  if (n === 0) return qs.map(() => Number.NaN)
  const sorted = Float64Array.from(values).sort()
  return qs.map((q) => {
    const h = (n - 1) * q
    const lo = Math.floor(h)
    const hi = Math.min(n - 1, lo + 1)
    return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!)
  })
}

export function mean(values: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < values.length; i++) s += values[i]!
  return values.length ? s / values.length : Number.NaN
}
