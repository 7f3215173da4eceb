import { VERSION } from "../cli/version.ts";

/**
 * The image `tp install` deploys unless `--image` says otherwise: deploy/Dockerfile built from the release binary.
 * "owner" stands for the repository owner, as in README's install URL, until the release workflow pushes the image.
 */
export const DEFAULT_IMAGE = `ghcr.io/owner/tp:${VERSION}`;
