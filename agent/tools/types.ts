/**
 * What hookmeter knows of each eBPF security tool (ESST). The names are a contract: they are
 * used in every flag, path and JSON field.
 */
export const TOOLS = ['kubearmor', 'tetragon', 'falco', 'tracee', 'other'] as const
export type Tool = (typeof TOOLS)[number]
export type KnownTool = Exclude<Tool, 'other'>
export const KNOWN_TOOLS: readonly KnownTool[] = ['kubearmor', 'tetragon', 'falco', 'tracee']

/** How a tool is recognised. Names are matched as the kernel keeps them (15 characters). */
export interface ToolSignature {
  /** process comm values of the tool's agent (15 characters at most) */
  comms: string[]
  /** the agent executable's base name */
  exeNames: string[]
  /** container image name patterns (matched against image references) */
  images: RegExp[]
  /** kernel program names (truncated to 15) that only this tool loads */
  programNames: RegExp[]
  /** kernel map names (truncated to 15) that only this tool creates */
  mapNames: RegExp[]
  /** bpffs pin path fragments (e.g. /sys/fs/bpf/tetragon) */
  pinPaths: RegExp[]
}

export interface PolicyKind {
  apiVersion: string
  kind: string
  scope: 'cluster' | 'namespaced' | 'host' | 'file'
}

export interface ToolProfile {
  name: KnownTool
  displayName: string
  signature: ToolSignature
  policyKinds: PolicyKind[]
  /** how a new policy takes effect, in one sentence (ESST.md section 5) */
  applyMechanism: string
  /** where exec events come out by default, and how to get them as JSON */
  eventOutput: string
  /** what clock or origin the event's timestamp has (ESST.md section 6) */
  timestampOrigin: string
  /** delivery mechanism(s) the tool uses by default (ring buffer, perf buffer) */
  delivery: string[]
}

/** A tool's exec event, as the parser of its output reads it. */
export interface ExecEvent {
  tool: KnownTool
  /** the executed binary's path */
  binary: string
  pid: number | null
  /** the event time as a Unix epoch in ns, from the tool's own timestamp */
  timeNs: bigint
  /** the policy or rule that produced it, when the event names one */
  policy: string | null
}

/** Where a program or map was attributed, and how. */
export interface Attribution {
  tool: Tool
  /** for `other`: the owner's comm or the signature that matched */
  toolDetail?: string
  by: 'owner' | 'program-name' | 'map-name' | 'pin-path' | 'none'
}
