// The `ws` package (Node has no global WebSocket before v22) is only loaded
// when globalThis.WebSocket is missing. Its client class is compatible with
// the browser WebSocket for what client.ts uses (onopen/onmessage/onclose/
// onerror, send, close, readyState), so it is typed as that; this avoids
// depending on @types/ws and @types/node.
declare module "ws" {
  const WebSocket: typeof globalThis.WebSocket;
  export default WebSocket;
}
