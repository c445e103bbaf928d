// The console's only way to the API: same origin, bearer token on every call,
// problem+json errors turned into ApiError (status and the API's own detail).

export class ApiError extends Error {
  constructor(problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
    this.name = "ApiError";
    this.status = problem.status;
    this.problem = problem;
  }
}

// Relative to the console's own address, so the pair can sit behind a proxy prefix.
export const API_BASE = new URL("../api/v1/", document.baseURI);

export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), API_BASE);
  for (const [name, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== null && one !== undefined && one !== "") url.searchParams.append(name, one);
    }
  }
  return url;
}

async function problemOf(response) {
  const fallback = { status: response.status, title: response.statusText, detail: "" };
  try {
    const body = await response.json();
    if (body && typeof body === "object") return { ...fallback, ...body };
  } catch {
    // Not JSON (a proxy's error page): the status line is all there is.
  }
  return { ...fallback, detail: `HTTP ${response.status} ${response.statusText}` };
}

export class Api {
  // token(): the current token; onUnauthorized(error): called on every 401.
  constructor({ token, onUnauthorized }) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra = {}) {
    return { Accept: "application/json", Authorization: `Bearer ${this.token()}`, ...extra };
  }

  async request(method, path, { query, body, signal } = {}) {
    const init = { method, headers: this.headers(), signal, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(apiUrl(path, query), init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError({ status: 0, title: "Network error", detail: "the API cannot be reached" });
    }
    if (!response.ok) {
      const error = new ApiError(await problemOf(response));
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  get(path, query) {
    return this.request("GET", path, { query });
  }

  post(path, body) {
    return this.request("POST", path, { body });
  }
}

export { problemOf };
