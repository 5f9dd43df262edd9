// Kubernetes' own rules for the names the plugin passes to its API, checked
// before any call: a secret's name is a DNS-1123 subdomain, a key inside it is
// made of letters, digits, '-', '_' and '.'. A "name" holding "/" or "%2F"
// would otherwise reach another API path, or match an operator's "name/key"
// allow-list entry as a whole.

const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KEY = /^[-._a-zA-Z0-9]+$/;

/** Where Kubernetes mounts a pod's service account token and CA (ARGO_S3_PLUGIN_SERVICEACCOUNT_DIR overrides it). */
export const DEFAULT_SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Why `name` is not a Kubernetes secret name, or undefined when it is one. */
export function secretNameProblem(name: string): string | undefined {
  if (name.length > 253) return `is ${name.length} characters long; a Kubernetes secret name has at most 253`;
  if (!SUBDOMAIN.test(name))
    return "is not a Kubernetes secret name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)";
  return undefined;
}

/** Why `key` is not a key a Kubernetes secret can hold, or undefined when it is one. */
export function secretKeyProblem(key: string): string | undefined {
  if (key.length > 253) return `is ${key.length} characters long; a secret key has at most 253`;
  if (!KEY.test(key) || key === "." || key === "..")
    return "is not a key a Kubernetes secret can hold (letters, digits, '-', '_' and '.')";
  return undefined;
}
