/** Vane's TypeScript SDK: versioned prompts with a local cache, push and fallback, and tracing of LLM runs. */
export { Vane } from "./client.js";
export { type ClientConfig, type VaneOptions, resolveConfig } from "./config.js";
export { observe, type ObserveOptions } from "./observe.js";
export { Prompt, type PromptConfig, type PromptFields, type PromptType } from "./prompt.js";
export { choose } from "./prompt_split.js";
export { type Message, type PromptBody, type Variables, compileBody, variablesOf } from "./prompt_template.js";
export type { CreatePromptOptions, GetPromptOptions } from "./prompts.js";
export { PromptError, PromptNotFound, PromptRejected, RegistryUnavailable } from "./registry_client.js";
export { ScoreError, type ScoreOptions } from "./scores.js";
export {
  Generation,
  type GenerationOptions,
  type GenerationUpdate,
  type ObservationType,
  type PromptLink,
  type Usage,
  currentGeneration,
  updateCurrentGeneration,
} from "./tracing_generation.js";
export { type EvalTag, ProjectType, type RegisterOptions, currentProvider, flush, register } from "./tracing_register.js";
