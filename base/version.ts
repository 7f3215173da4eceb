/**
 * tp's version, shown by `tp version` and exchanged with the traffic-manager and the agents. Kept in step with
 * deno.json's "version" (the release workflow checks the tag against it). Its own module, below every folder, so
 * that proto/, manager/, agent/ and k8s/ know it without importing cli/.
 */
export const VERSION = "0.1.0";
