"""TypeScript types for frontends: openapi-typescript output type-checks a frontend's calls.

`schema.d.ts` is generated from the committed document by the pinned openapi-typescript, and a
small example frontend is checked with `tsc --strict`; a deliberately wrong file proves tsc would
catch a frontend that misreads the schema (points are strings or null, codes a closed set).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.clients.conftest import NPM_INSTALL_TIMEOUT, NPX_TIMEOUT, output, run

# The first test pays for the session's npm install (bounded by NPM_INSTALL_TIMEOUT) in its setup.
pytestmark = pytest.mark.timeout(NPM_INSTALL_TIMEOUT + 3 * NPX_TIMEOUT)

TSC_FLAGS = [
    "--strict",
    "--noEmit",
    "--target",
    "es2022",
    "--lib",
    "es2022,dom",
    "--module",
    "esnext",
    "--moduleResolution",
    "bundler",
]

EXAMPLE = """\
import type { components, paths } from "./schema";

type PointsAnswer = components["schemas"]["PointsAnswer"];
type Problem = components["schemas"]["Problem"];
type Merged = paths["/users/{user_id}/points"]["get"];
type MergedOk = Merged["responses"][200]["content"]["application/json"];
type OneNotFound =
  paths["/users/{user_id}/points/benepia"]["get"]["responses"][404]["content"]["application/problem+json"];
type OneRejected =
  paths["/users/{user_id}/points/benepia"]["get"]["responses"][422]["content"]["application/problem+json"];

/** Exact decimal strings ("12000", "250.0") summed without floats, as a string. */
export function totalPoints(answer: PointsAnswer): string {
  const entries = answer.balances
    .map((b) => b.points)
    .filter((p): p is string => p !== null && p !== undefined);
  const scale = Math.max(0, ...entries.map((p) => (p.split(".")[1] ?? "").length));
  const scaled = entries.map((p) => {
    const [whole, fraction = ""] = p.split(".");
    return BigInt(whole + fraction.padEnd(scale, "0"));
  });
  const sum = scaled.reduce((a, b) => a + b, 0n);
  const negative = sum < 0n;
  const digits = (negative ? -sum : sum).toString().padStart(scale + 1, "0");
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${text}` : text;
}

/** A frontend's message for a problem, narrowed on its stable `code`. */
export function describeProblem(problem: Problem | OneNotFound | OneRejected): string {
  switch (problem.code) {
    case "unknown_provider":
      return `No such provider: ${problem.provider ?? "?"}`;
    case "provider_rejected":
      return `The provider refused the linked account (${problem.status}).`;
    case "rate_limited":
    case "upstream_rate_limited":
      return `Try again in ${problem.retry_after ?? 1} s.`;
    default:
      return `${problem.title} (request ${problem.request_id ?? "unknown"})`;
  }
}

export async function fetchPoints(base: string, userId: string): Promise<MergedOk | Problem> {
  const resp = await fetch(`${base}/users/${encodeURIComponent(userId)}/points`);
  return resp.ok ? ((await resp.json()) as MergedOk) : ((await resp.json()) as Problem);
}

export function render(answer: PointsAnswer): string[] {
  return answer.balances.map((b) => {
    if (b.status === "ok") return `${b.provider}: ${b.points ?? "-"} ${b.unit ?? ""}`;
    return b.error ? describeProblem(b.error) : `${b.provider}: unavailable`;
  });
}

const sample: PointsAnswer = {
  user_id: "alice",
  complete: true,
  balances: [
    { provider: "benepia", status: "ok", points: "12000", unit: "benepia_point", as_of: null,
      cached: false, stale: false, error: null },
    { provider: "gafapay", status: "ok", points: "250.0", unit: "gafapay:x", as_of: null,
      cached: false, stale: false, error: null },
  ],
};
export const total: string = totalPoints(sample);

// Always sent, so required: no `undefined` to handle.
type Balance = components["schemas"]["Balance"];
export const pointsOf = (b: Balance): string | null => b.points;
export const wasCached = (b: Balance): boolean => b.cached || b.stale;
export const isOk = (s: components["schemas"]["BalanceStatus"]): boolean => s === "ok";
"""

WRONG = """\
import type { components } from "./schema";

type PointsAnswer = components["schemas"]["PointsAnswer"];
type Problem = components["schemas"]["Problem"];

// Points are decimal strings (or null), never numbers.
export const first = (a: PointsAnswer): number => a.balances[0].points;
// A problem's status is a number: comparing it with a string can never match.
export const known = (p: Problem): boolean => p.status === "404";
"""


def tsc(project: Path, source: str) -> tuple[int, str]:
    proc = run(["npx", "--no-install", "tsc", *TSC_FLAGS, source], cwd=project, timeout=NPX_TIMEOUT)
    return proc.returncode, output(proc)


def test_schema_declares_paths_and_components(ts_project: Path) -> None:
    schema = (ts_project / "schema.d.ts").read_text()

    assert re.search(r"^export interface paths \{", schema, re.MULTILINE)
    assert re.search(r"^export interface components \{", schema, re.MULTILINE)
    assert '"/users/{user_id}/points": {' in schema
    assert "PointsAnswer: {" in schema


def test_example_frontend_type_checks_strictly(ts_project: Path) -> None:
    (ts_project / "example.ts").write_text(EXAMPLE)

    code, out = tsc(ts_project, "example.ts")

    assert code == 0, out


def test_tsc_rejects_a_frontend_that_misreads_the_schema(ts_project: Path) -> None:
    (ts_project / "wrong.ts").write_text(WRONG)

    code, out = tsc(ts_project, "wrong.ts")

    assert code != 0, out
    # string | null is not a number; a number status never equals a string.
    assert "wrong.ts(7," in out
    assert "error TS2322" in out
    assert "wrong.ts(9," in out
    assert "error TS2367" in out
