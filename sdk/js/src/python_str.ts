/**
 * Python's `str()` of a JSON-like value, so that `compile` writes a variable exactly as the
 * Python SDK and the registry do (`True`, `None`, `0.1`, `1e-07`, `['a', 1]`, `{'k': 'v'}`).
 * JavaScript has one number type: a whole number is written as Python writes an int.
 */
export function pythonStr(value: unknown): string {
  return typeof value === "string" ? value : pythonRepr(value);
}

function pythonRepr(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "number") return numberRepr(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return stringRepr(value);
  if (Array.isArray(value)) return `[${value.map(pythonRepr).join(", ")}]`;
  if (typeof value === "object") {
    const items = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `${stringRepr(k)}: ${pythonRepr(v)}`,
    );
    return `{${items.join(", ")}}`;
  }
  return String(value);
}

function numberRepr(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (!Number.isFinite(n)) return n > 0 ? "inf" : "-inf";
  if (Number.isInteger(n) && Math.abs(n) < 2 ** 53) return Object.is(n, -0) ? "-0.0" : n.toFixed(0);
  // Python's float repr: the same shortest digits as JavaScript, written in exponent form when
  // the decimal exponent is below -4 or at least 16 (JavaScript switches at -7 and 21).
  const [digits, exponent] = shortestDigits(Math.abs(n));
  const sign = n < 0 ? "-" : "";
  const point = exponent + 1; // digits before the decimal point
  if (exponent < -4 || exponent >= 16) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exponent).toString().padStart(2, "0");
    return `${sign}${mantissa}e${exponent < 0 ? "-" : "+"}${e}`;
  }
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}.0`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** The shortest round-trip digits of a positive finite number and its decimal exponent. */
function shortestDigits(n: number): [string, number] {
  const [mantissa, exp] = n.toExponential().split("e") as [string, string];
  return [mantissa.replace(".", ""), Number(exp)];
}

function stringRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const code = ch.codePointAt(0) as number;
    if (ch === "\\" || ch === quote) out += `\\${ch}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return out + quote;
}
