//! Multi-turn chat history, as `pistil chat` and the server keep it.

use super::{Event, Message, Prompt, Role};

/// The messages of a chat so far. Assistant turns keep their thought apart
/// ([`Message::thinking`]); the chat template decides whether earlier
/// thoughts are shown to the model (DeepSeek R1's drops them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    system: Option<String>,
    messages: Vec<Message>,
}

impl Conversation {
    /// An empty conversation.
    pub fn new() -> Conversation {
        Conversation::default()
    }

    /// An empty conversation with a system message first.
    pub fn with_system(system: impl Into<String>) -> Conversation {
        Conversation {
            system: Some(system.into()),
            messages: Vec::new(),
        }
    }

    /// Adds the user's turn.
    pub fn push_user(&mut self, text: impl Into<String>) {
        self.messages.push(Message::user(text));
    }

    /// Adds the assistant's answer (and its thought, if it had one).
    pub fn push_assistant(&mut self, content: impl Into<String>, thinking: Option<String>) {
        let mut m = Message::assistant(content);
        m.thinking = thinking.filter(|t| !t.is_empty());
        self.messages.push(m);
    }

    /// Removes the last message if it is the user's (a turn that was cancelled
    /// before any answer); returns it.
    pub fn pop_unanswered(&mut self) -> Option<Message> {
        match self.messages.last() {
            Some(m) if m.role == Role::User => self.messages.pop(),
            _ => None,
        }
    }

    /// Forgets every turn (the system message stays).
    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Number of turns (without the system message).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there is no turn yet.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// All messages, the system message first.
    pub fn messages(&self) -> Vec<Message> {
        let mut all = Vec::with_capacity(self.messages.len() + 1);
        if let Some(s) = &self.system {
            all.push(Message::system(s.clone()));
        }
        all.extend(self.messages.iter().cloned());
        all
    }

    /// The prompt for the next assistant turn.
    pub fn prompt(&self) -> Prompt {
        Prompt::Chat(self.messages())
    }
}

/// Collects a reply's events into its thought and answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The thought (`<think>` block), without the tags.
    pub thinking: String,
    /// The answer.
    pub content: String,
}

impl Transcript {
    /// Adds an event's text.
    pub fn push(&mut self, ev: &Event<'_>) {
        match ev {
            Event::Thinking(t) => self.thinking.push_str(t),
            Event::Content(t) => self.content.push_str(t),
        }
    }

    /// The thought, if there was one.
    pub fn thinking(&self) -> Option<String> {
        (!self.thinking.is_empty()).then(|| self.thinking.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns() {
        let mut c = Conversation::with_system("be brief");
        c.push_user("hi");
        c.push_assistant("hello", Some("greet back".into()));
        c.push_user("again");
        let m = c.messages();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].role, Role::System);
        assert_eq!(m[2].thinking.as_deref(), Some("greet back"));
        assert_eq!(c.pop_unanswered().map(|m| m.content), Some("again".into()));
        assert_eq!(c.pop_unanswered(), None);
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.messages().len(), 1);
        let mut t = Transcript::default();
        t.push(&Event::Thinking("a"));
        t.push(&Event::Content("b"));
        t.push(&Event::Content("c"));
        assert_eq!((t.thinking(), t.content.as_str()), (Some("a".into()), "bc"));
    }
}
