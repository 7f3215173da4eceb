/** tp's version, shown by `tp version` and exchanged with the traffic-manager. Kept in step with deno.json. */
export const VERSION = "0.1.0";
