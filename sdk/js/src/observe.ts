/** `observe(fn, { asType: "generation" })`: a span around each call of a function, sync or async,
 * with its arguments as input and its return value as output. */
import { type ObservationType, type PromptLink, withGeneration } from "./tracing_generation.js";
import { getTracer } from "./tracing_register.js";

export interface ObserveOptions {
  asType?: ObservationType; // default "span"
  name?: string; // default the function's name
  model?: string;
  prompt?: PromptLink;
  captureInput?: boolean;
  captureOutput?: boolean;
}

/** One argument is the input as it is; several are the list of them. */
function callInput(args: readonly unknown[]): unknown {
  if (args.length === 0) return undefined;
  return args.length === 1 ? args[0] : [...args];
}

/** Trace every call of `fn`; inside, `updateCurrentGeneration({ usage, ... })` adds to the span. */
export function observe<A extends unknown[], R>(fn: (...args: A) => R, options: ObserveOptions = {}): (...args: A) => R {
  const name = options.name || fn.name || "anonymous";
  const asType = options.asType ?? "span";
  return function observed(this: unknown, ...args: A): R {
    const input = options.captureInput === false ? undefined : callInput(args);
    const spanOptions = { name, asType, model: options.model, prompt: options.prompt, input };
    return withGeneration(getTracer(), spanOptions, (generation) => {
      const result = fn.apply(this, args);
      const record = (value: unknown): void => {
        if (options.captureOutput !== false && value !== undefined && value !== null) generation.update({ output: value });
      };
      if (result instanceof Promise) {
        return result.then((value: unknown) => {
          record(value);
          return value;
        }) as R;
      }
      record(result);
      return result;
    });
  };
}
