declare module '*.o' {
  const path: string
  export default path
}

declare module '*/chart.umd.min.js' {
  const path: string
  export default path
}
