// Renders an Ollama Modelfile TEMPLATE with Go's text/template the way Ollama does, for the chat tests.
//
// Mirrors (standard library only) the parts of ollama/ollama that shape template data: api.Message and
// api.Tool decoding (PropertyType accepts a string or a list), template.collate (system messages
// gathered, consecutive same-role messages except tools joined by a blank line), the conversion to
// template structs (arguments and properties as Go maps), the "json" func and missingkey=zero.
// Reads {"template": ..., "cases": [{messages, tools, think, think_level}]} on stdin, writes a JSON list.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type PropertyType []string

func (p *PropertyType) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*p = PropertyType{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return err
	}
	*p = many
	return nil
}

type ToolProperty struct {
	Type        PropertyType `json:"type,omitempty"`
	Items       any          `json:"items,omitempty"`
	Description string       `json:"description,omitempty"`
	Enum        []any        `json:"enum,omitempty"`
}

type ToolFunctionParameters struct {
	Type       string                  `json:"type"`
	Defs       any                     `json:"$defs,omitempty"`
	Items      any                     `json:"items,omitempty"`
	Required   []string                `json:"required,omitempty"`
	Properties map[string]ToolProperty `json:"properties"`
}

type ToolFunction struct {
	Name        string                 `json:"name"`
	Description string                 `json:"description"`
	Parameters  ToolFunctionParameters `json:"parameters"`
}

type Tool struct {
	Type     string       `json:"type"`
	Items    any          `json:"items,omitempty"`
	Function ToolFunction `json:"function"`
}

type ToolCallFunction struct {
	Index     int            `json:"index"`
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

type ToolCall struct {
	ID       string           `json:"id"`
	Function ToolCallFunction `json:"function"`
}

type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking"`
	ToolCalls  []ToolCall `json:"tool_calls"`
	ToolName   string     `json:"tool_name"`
	ToolCallID string     `json:"tool_call_id"`
}

// Template-side shapes, as in ollama/template/template.go.
type templateToolCallFunction struct {
	Index     int
	Name      string
	Arguments map[string]any
}

type templateToolCall struct {
	ID       string
	Function templateToolCallFunction
}

type templateMessage struct {
	Role       string
	Content    string
	Thinking   string
	ToolCalls  []templateToolCall
	ToolName   string
	ToolCallID string
}

type Case struct {
	Messages   []Message `json:"messages"`
	Tools      []Tool    `json:"tools"`
	Think      bool      `json:"think"`
	ThinkLevel string    `json:"think_level"`
	IsThinkSet bool      `json:"is_think_set"`
}

type Input struct {
	Template string `json:"template"`
	Cases    []Case `json:"cases"`
}

type Result struct {
	Out   string `json:"out"`
	Error string `json:"error,omitempty"`
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
}

func collate(msgs []Message) (string, []*Message) {
	var system []string
	var collated []*Message
	for i := range msgs {
		if msgs[i].Role == "system" {
			system = append(system, msgs[i].Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msgs[i].Role && msgs[i].Role != "tool" {
			collated[len(collated)-1].Content += "\n\n" + msgs[i].Content
		} else {
			collated = append(collated, &msgs[i])
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func convert(msgs []*Message) []*templateMessage {
	out := make([]*templateMessage, len(msgs))
	for i, m := range msgs {
		var calls []templateToolCall
		for _, tc := range m.ToolCalls {
			calls = append(calls, templateToolCall{ID: tc.ID, Function: templateToolCallFunction{
				Index: tc.Function.Index, Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
		}
		out[i] = &templateMessage{Role: m.Role, Content: m.Content, Thinking: m.Thinking, ToolCalls: calls,
			ToolName: m.ToolName, ToolCallID: m.ToolCallID}
	}
	return out
}

func render(tmpl *template.Template, c Case) Result {
	system, msgs := collate(c.Messages)
	var b bytes.Buffer
	err := tmpl.Execute(&b, map[string]any{
		"System":     system,
		"Messages":   convert(msgs),
		"Tools":      c.Tools,
		"Response":   "",
		"Think":      c.Think,
		"ThinkLevel": c.ThinkLevel,
		"IsThinkSet": c.IsThinkSet,
	})
	if err != nil {
		return Result{Error: err.Error()}
	}
	return Result{Out: b.String()}
}

func main() {
	var in Input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(in.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "template does not parse:", err)
		os.Exit(3)
	}
	results := make([]Result, len(in.Cases))
	for i, c := range in.Cases {
		results[i] = render(tmpl, c)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		os.Exit(4)
	}
}
