// Renders a chat template with llama.cpp's own Jinja engine (common/jinja, compiled from llama.cpp's source
// tree), step for step as common_chat_template_direct_apply does: lex + parse, capability probe (caps_get),
// context from JSON (reasoning_effort / preserve_reasoning through caps_apply_*, add_generation_prompt only
// when true), execute, join the string parts. Not reproduced: llama-server's OpenAI message parsing and its
// per-template workarounds, and the BOS/EOS stripping done after rendering.
//
// usage: jinja_driver TEMPLATE_FILE CASES_JSON_FILE
//   CASES_JSON_FILE: a JSON array of template contexts (messages, tools, add_generation_prompt, ...)
//   stdout: {"caps": {name: bool}, "results": [{"out": text} or {"error": message}, ...]}

#include "jinja/caps.h"
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "jinja/runtime.h"
#include "json.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

using json = common_json;

// common/json.cpp's JSON_ASSERT is GGML_ASSERT; this driver links no ggml, so a failed assert aborts here.
extern "C" void ggml_abort(const char* file, int line, const char* fmt, ...) {
  std::fprintf(stderr, "jinja_driver: assertion at %s:%d: ", file, line);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fputc('\n', stderr);
  std::abort();
}

static std::string read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    throw std::runtime_error(std::string("cannot open ") + path);
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// One rendering, as common_chat_template_direct_apply_impl builds its context and runs the program.
static std::string render(const std::string& source, jinja::program& prog, const json& case_ctx) {
  jinja::context ctx(source);
  json inp = json::object();
  for (const auto& [key, val] : case_ctx.items()) {
    if (key == "add_generation_prompt" && !(val.is_boolean() && val.get<bool>())) {
      continue;  // llama.cpp sets the key only when it is true
    }
    inp[key] = val;
  }
  if (inp.contains("preserve_reasoning") && inp["preserve_reasoning"].is_boolean()) {
    jinja::caps_apply_preserve_reasoning(ctx, inp["preserve_reasoning"].get<bool>());
  }
  if (inp.contains("reasoning_effort") && inp["reasoning_effort"].is_string() &&
      !inp["reasoning_effort"].get<std::string>().empty()) {
    jinja::caps_apply_reasoning_effort(ctx, inp["reasoning_effort"].get<std::string>());
  }
  jinja::global_from_json(ctx, inp, /* mark_input= */ true);
  jinja::runtime runtime(ctx);
  const jinja::value results = runtime.execute(prog);
  return jinja::runtime::gather_string_parts(results)->as_string().str();
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s TEMPLATE_FILE CASES_JSON_FILE\n", argv[0]);
    return 2;
  }
  std::string source;
  jinja::program prog;
  json cases;
  try {
    jinja::lexer lexer;
    auto tokens = lexer.tokenize(read_file(argv[1]));
    prog = jinja::parse_from_tokens(tokens);
    source = tokens.source;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jinja_driver: %s: template does not parse: %s\n", argv[1], e.what());
    return 1;
  }
  try {
    cases = json::parse(read_file(argv[2]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jinja_driver: %s: not JSON: %s\n", argv[2], e.what());
    return 1;
  }
  if (!cases.is_array()) {
    std::fprintf(stderr, "jinja_driver: %s: expected a JSON array of contexts\n", argv[2]);
    return 1;
  }
  json out = json::object();
  json caps = json::object();
  for (const auto& [name, on] : jinja::caps_get(prog).to_map()) {
    caps[name] = on;
  }
  out["caps"] = caps;
  json results = json::array();
  for (size_t i = 0; i < cases.size(); i++) {
    try {
      results.push_back(json{{"out", render(source, prog, cases.at(i))}});
    } catch (const std::exception& e) {
      results.push_back(json{{"error", std::string(e.what())}});
    }
  }
  out["results"] = results;
  std::cout << out.dump() << std::endl;
  return 0;
}
