export * from "./client.js";
export type * from "./messages.js";
