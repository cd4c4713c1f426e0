//! Chat templates against goldens made once with jinja2 and llama.cpp
//! (`tests/fixtures/chat/`, see its README), template choice, BOS handling,
//! and the R1 reasoning flow on the real R1 vocabulary.

use pistil_runtime::chat::{
    prompt_opens_thinking, BuiltinTemplate, ChatMessage, ChatTemplate, ReasoningEvent,
    ReasoningParser, TemplateOrigin, ThinkBudget,
};
use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::tokenizer::{Detokenizer, Tokenizer};
use pistil_tests::fixture;
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
struct Goldens {
    conversations: HashMap<String, Vec<Msg>>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Msg {
    role: String,
    content: String,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    conversation: String,
    add_generation_prompt: bool,
    bos_token: String,
    eos_token: String,
    jinja2: String,
    llama_cpp: Option<String>,
    reference: String,
    expected: String,
}

fn goldens() -> Goldens {
    let text = std::fs::read_to_string(fixture("chat/goldens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn vocab(name: &str) -> (Gguf, Tokenizer) {
    let gguf = Gguf::open(
        &fixture(&format!("tokenizer/{name}.vocab.gguf")),
        LoadMode::Mmap,
    )
    .unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    (gguf, tok)
}

fn messages(g: &Goldens, conv: &str) -> Vec<ChatMessage> {
    g.conversations[conv]
        .iter()
        .map(|m| ChatMessage::new(&m.role, &m.content))
        .collect()
}

#[test]
fn templates_match_goldens() {
    let g = goldens();
    let (r1_gguf, r1_tok) = vocab("deepseek-r1-qwen");
    let mut checked = 0;
    for c in &g.cases {
        let tmpl = match c.name.as_str() {
            "deepseek-r1-gguf" => {
                let t = ChatTemplate::from_gguf(&r1_gguf, &r1_tok).unwrap();
                assert_eq!(t.origin(), TemplateOrigin::Gguf);
                assert_eq!(t.bos_token(), c.bos_token);
                assert_eq!(t.eos_token(), c.eos_token);
                t
            }
            name => {
                let which = match name {
                    "builtin-deepseek-r1" => BuiltinTemplate::DeepSeekR1,
                    "builtin-chatml" => BuiltinTemplate::ChatMl,
                    "builtin-llama3" => BuiltinTemplate::Llama3,
                    "builtin-gemma" => BuiltinTemplate::Gemma,
                    other => panic!("unknown golden {other}"),
                };
                ChatTemplate::with_tokens(which.source(), &c.bos_token, &c.eos_token).unwrap()
            }
        };
        let got = tmpl
            .render(&messages(&g, &c.conversation), c.add_generation_prompt)
            .unwrap();
        assert_eq!(
            got, c.expected,
            "{} / {} / add_generation_prompt={} (reference: {})",
            c.name, c.conversation, c.add_generation_prompt, c.reference
        );
        assert_eq!(got, c.jinja2, "jinja2 agrees for every case");
        checked += 1;
    }
    assert_eq!(checked, 20);
}

/// The R1 template drops the earlier turn's thought, as jinja2 does; llama.cpp's
/// built-in (non-Jinja) DeepSeek-3 format keeps it — recorded in the goldens.
#[test]
fn r1_template_drops_earlier_thoughts() {
    let g = goldens();
    let c = g
        .cases
        .iter()
        .find(|c| {
            c.name == "deepseek-r1-gguf" && c.conversation == "multi" && c.add_generation_prompt
        })
        .unwrap();
    assert!(!c.expected.contains("<think>"));
    assert!(c.expected.ends_with("<｜Assistant｜>"));
    assert!(c.llama_cpp.as_deref().unwrap().contains("<think>"));
}

#[test]
fn builtin_choice_and_bos() {
    let (g, tok) = vocab("gemma3");
    let t = ChatTemplate::from_gguf(&g, &tok).unwrap();
    assert_eq!(t.origin(), TemplateOrigin::Builtin(BuiltinTemplate::Gemma));
    let prompt = t.render_prompt(&[ChatMessage::user("Hi")]).unwrap();
    assert_eq!(
        prompt,
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(tok.encode(&prompt, true, true).unwrap()[..2], [2, 105]);

    let (g, tok) = vocab("llama-bpe");
    let t = ChatTemplate::from_gguf(&g, &tok).unwrap();
    assert_eq!(t.origin(), TemplateOrigin::Builtin(BuiltinTemplate::Llama3));

    // R1 from the file: the template writes BOS, the tokenizer adds BOS too;
    // render_prompt drops the text so the prompt gets exactly one.
    let (g, tok) = vocab("deepseek-r1-qwen");
    let t = ChatTemplate::from_gguf(&g, &tok).unwrap();
    let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("Hi")];
    assert!(t
        .render(&msgs, true)
        .unwrap()
        .starts_with("<｜begin▁of▁sentence｜>Be brief."));
    let prompt = t.render_prompt(&msgs).unwrap();
    assert_eq!(prompt, "Be brief.<｜User｜>Hi<｜Assistant｜>");
    let ids = tok.encode(&prompt, true, true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| Some(i) == tok.bos()).count(), 1);
    assert_eq!(ids[0], 151646);
    assert!(!prompt_opens_thinking(&prompt));

    let b = ChatTemplate::builtin(BuiltinTemplate::DeepSeekR1, &tok).unwrap();
    let p = b.render_prompt(&msgs).unwrap();
    assert!(p.ends_with("<｜Assistant｜><think>\n"));
    assert!(prompt_opens_thinking(&p));
}

/// History keeps thought and answer apart: the template sees only the answer
/// (and `reasoning_content`, for templates that use it).
#[test]
fn history_keeps_thoughts_apart() {
    let (g, tok) = vocab("deepseek-r1-qwen");
    let t = ChatTemplate::from_gguf(&g, &tok).unwrap();
    let msgs = [
        ChatMessage::user("2+2?"),
        ChatMessage::assistant_with_thinking("4.", "Two plus two is four."),
        ChatMessage::user("3+3?"),
    ];
    let p = t.render_prompt(&msgs).unwrap();
    assert_eq!(
        p,
        "<｜User｜>2+2?<｜Assistant｜>4.<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜>"
    );

    let qwen3_like = "{% for m in messages %}{% if m.reasoning_content is string %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}|{% endfor %}";
    let t = ChatTemplate::with_tokens(qwen3_like, "", "").unwrap();
    assert_eq!(
        t.render(&msgs, false).unwrap(),
        "2+2?|<think>Two plus two is four.</think>4.|3+3?|"
    );
}

#[test]
fn template_errors_are_clear() {
    let err = ChatTemplate::with_tokens("{% for m in messages %}", "", "").unwrap_err();
    assert!(err.to_string().contains("does not parse"), "{err}");
    let t =
        ChatTemplate::with_tokens("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
    let err = t.render(&[], true).unwrap_err();
    assert!(err.to_string().contains("roles must alternate"), "{err}");
}

/// A whole R1 reply, token by token through the detokenizer and the parser.
#[test]
fn r1_reply_splits_into_thought_and_answer() {
    let (_, tok) = vocab("deepseek-r1-qwen");
    let reply =
        "<think>\nThe user greets me in French. 你好 means hello.\n</think>\n\nBonjour ! 😊";
    let ids = tok.encode(reply, false, true).unwrap();
    assert_eq!(ids[0], tok.token_id("<think>").unwrap());

    let mut detok = Detokenizer::new();
    let mut parser = ReasoningParser::for_tokenizer(&tok, false);
    let (mut thought, mut answer) = (String::new(), String::new());
    let mut take = |evs: Vec<ReasoningEvent>| {
        for e in evs {
            match e {
                ReasoningEvent::Thinking(s) => thought.push_str(&s),
                ReasoningEvent::Content(s) => answer.push_str(&s),
            }
        }
    };
    for &id in &ids {
        let text = detok.push(&tok, id).unwrap().to_string();
        take(parser.push_token(id, &text));
    }
    take(parser.push_text(detok.finish()));
    take(parser.finish());
    assert_eq!(thought, "The user greets me in French. 你好 means hello.");
    assert_eq!(answer, "Bonjour ! 😊");

    // Same reply after a template that opened the thought.
    let ids = tok.encode(&reply["<think>".len()..], false, true).unwrap();
    let mut parser = ReasoningParser::for_tokenizer(&tok, true);
    let mut detok = Detokenizer::new();
    let mut out = Vec::new();
    for &id in &ids {
        let text = detok.push(&tok, id).unwrap().to_string();
        out.extend(parser.push_token(id, &text));
    }
    out.extend(parser.finish());
    assert!(matches!(&out[0], ReasoningEvent::Thinking(_)));
    let thought: String = out
        .iter()
        .filter_map(|e| match e {
            ReasoningEvent::Thinking(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let answer: String = out
        .iter()
        .filter_map(|e| match e {
            ReasoningEvent::Content(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thought, "The user greets me in French. 你好 means hello.");
    assert_eq!(answer, "Bonjour ! 😊");
}

#[test]
fn think_budget_forces_the_close_in_r1_tokens() {
    let (_, tok) = vocab("deepseek-r1-qwen");
    let mut b = ThinkBudget::for_tokenizer(&tok, 3, true).unwrap();
    let forced = tok.encode("\n</think>\n\n", false, true).unwrap();
    assert_eq!(forced, [198, 151649, 271]);
    assert_eq!(b.on_start(), None);
    assert_eq!(b.on_token(785), None);
    assert_eq!(b.on_token(1196), None);
    assert_eq!(b.on_token(1196), Some(&forced[..]));
    assert_eq!(b.on_token(9707), None);

    // A thought the model closes itself is never cut.
    let mut b = ThinkBudget::for_tokenizer(&tok, 3, false).unwrap();
    assert_eq!(b.on_token(151648), None);
    assert_eq!(b.on_token(785), None);
    assert_eq!(b.on_token(151649), None);
    assert_eq!(b.on_token(9707), None);
    assert_eq!(b.on_token(9707), None);
}
