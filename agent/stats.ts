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

export interface Histogram {
  /** upper bounds in seconds, ascending; +Inf is implied */
  le: number[]
  /** cumulative counts per bound, as Prometheus histograms are */
  buckets: number[]
  /** sum of the values, in seconds */
  sum: number
  count: number
}

/** Exponential bounds from 1 µs to about 1 s, in seconds: wide enough for exec phases and delivery. */
export const LATENCY_BOUNDS = Array.from({ length: 25 }, (_, i) =>
  Number((1e-6 * 2 ** (i * 0.8333)).toPrecision(3))
)

export function histogram(valuesNs: ArrayLike<number>, le: number[] = LATENCY_BOUNDS): Histogram {
  const counts = new Array<number>(le.length).fill(0)
  let sum = 0
  for (let i = 0; i < valuesNs.length; i++) {
    const s = valuesNs[i]! / 1e9
    sum += s
    const b = le.findIndex((bound) => s <= bound)
    if (b >= 0) counts[b]!++
  }
  for (let i = 1; i < counts.length; i++) counts[i]! += counts[i - 1]!
  return { le, buckets: counts, sum, count: valuesNs.length }
}
