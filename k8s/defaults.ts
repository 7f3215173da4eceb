import { VERSION } from "../base/version.ts";

/**
 * The image `tp install` deploys unless `--image` says otherwise: deploy/Dockerfile built from the release binary.
 * "owner" stands for the repository owner, as in README's install URL, until the release workflow pushes the image.
 */
export const DEFAULT_IMAGE = `ghcr.io/owner/tp:${VERSION}`;

/** The traffic-manager's Service, in its namespace (what `tp install` creates). */
export const MANAGER_SERVICE = "tp-manager";

/**
 * The manager's agent port: it serves only the traffic-agents' API, each agent authenticated by its workload's
 * credential (`tp manager --agent-listen`, `TP_MANAGER_AGENT_LISTEN`). The manager's Service exposes it.
 */
export const DEFAULT_AGENT_PORT = 8082;
