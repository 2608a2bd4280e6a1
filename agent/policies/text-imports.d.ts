// policies/scopes.yaml is imported as text so that `bun build --compile` embeds it
declare module '*/scopes.yaml' {
  const text: string
  export default text
}
