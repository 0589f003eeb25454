//! Object ids a JSON request body names (`input_file_id`, `training_file`, `file_id` inside
//! message content, `previous_response_id`, `vector_store_ids`...), wherever they are nested:
//! a chat message may attach a file by id as well as a batch may.

use std::borrow::Cow;
use std::fmt;

use memchr::memmem;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::proxy::errors::Reject;

/// Keys whose string value names one provider object.
const ONE: &[&str] = &[
    "file_id",
    "input_file_id",
    "training_file",
    "validation_file",
    "previous_response_id",
    "vector_store_id",
    "container",
    "conversation",
];

/// Keys whose array of strings names provider objects.
const MANY: &[&str] = &["file_ids", "vector_store_ids"];

/// What a request body says about provider objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyRefs {
    /// Every object id named anywhere in the body, duplicate keys included (deduplicated).
    pub ids: Vec<String>,
    /// Top-level `store` (the Responses API stores unless it is `false`); `true` if any of
    /// several `store` keys is `true`, whichever one the provider reads.
    pub store: Option<bool>,
    /// Top-level `previous_response_id` is present.
    pub previous_response: bool,
    /// Set by the last `type` key read when its value is a string ending in `tool_use`.
    type_is_tool_use: bool,
}

/// Every key a body may name an object by: the keys above and `store`.
fn keys() -> impl Iterator<Item = &'static str> {
    ONE.iter().chain(MANY).chain(&["store"]).copied()
}

/// Finders for the keys without an underscore (with their closing quote), built once. The
/// others are found from the underscores of the body (few, in plain inference bodies).
static PLAIN_KEYS: std::sync::LazyLock<Vec<memmem::Finder<'static>>> =
    std::sync::LazyLock::new(|| {
        keys()
            .filter(|k| !k.contains('_'))
            .map(|k| memmem::Finder::new(format!("{k}\"").as_bytes()).into_owned())
            .collect()
    });

/// Whether the body may name an object: a quick scan that spares plain inference bodies a
/// parse. True exactly when the body contains a key (or `store`) followed by its closing
/// quote, or any `\u` (a key spelled with escapes). One pass over the underscores and
/// backslashes of the body checks the keys that have an underscore (most) and `\u`; a
/// substring search each finds the three that have none.
fn may_reference(body: &[u8]) -> bool {
    let named_at = |at: usize| {
        keys().filter(|k| k.contains('_')).any(|k| {
            k.bytes().enumerate().any(|(j, b)| {
                b == b'_'
                    && at >= j
                    && body[at - j..].starts_with(k.as_bytes())
                    && body.get(at - j + k.len()) == Some(&b'"')
            })
        })
    };
    memchr::memchr2_iter(b'_', b'\\', body).any(|at| {
        if body[at] == b'\\' {
            body.get(at + 1) == Some(&b'u')
        } else {
            named_at(at)
        }
    }) || PLAIN_KEYS.iter().any(|f| f.find(body).is_some())
}

/// Scans a request body (not a multipart form). The walk streams through the JSON without
/// building a tree and sees every value of a duplicated key, so `{"file_id":"mine",
/// "file_id":"theirs"}` is checked for both, whichever one the provider reads. A body that
/// may name objects but does not parse (deeper than 128 levels, not JSON) is refused:
/// the provider's parser might read it.
pub fn scan(body: &[u8]) -> Result<BodyRefs, Reject> {
    let mut refs = BodyRefs::default();
    if body.is_empty() || !may_reference(body) {
        return Ok(refs);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk {
        refs: &mut refs,
        top: true,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|_| Reject::InvalidJson)?;
    Ok(refs)
}

fn push(ids: &mut Vec<String>, id: &str) {
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_owned());
    }
}

/// Visits any JSON value, collecting references.
struct Walk<'a> {
    refs: &'a mut BodyRefs,
    top: bool,
}

/// How the value under a key is read.
#[derive(Clone, Copy, PartialEq)]
enum Slot {
    /// An ordinary value: walked.
    Plain,
    /// A string is a reference (`conversation` may also be `{"id": ...}`).
    One { conversation: bool },
    /// An array of strings are references.
    Many,
    /// A `type`: a string ending in `tool_use` marks its object as a tool call.
    Type,
    /// The top-level `store` flag.
    Store,
}

struct Value<'a> {
    refs: &'a mut BodyRefs,
    slot: Slot,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walk {
                refs: &mut *self.refs,
                top: false,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // An Anthropic tool call's `input` holds the model's arguments, not references; its
        // `type` may come after it, so what `input` names is set aside until the end.
        let mut tool_use = false;
        let mut input: Option<BodyRefs> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let key = key.as_ref();
            if key == "metadata" {
                map.next_value::<IgnoredAny>()?; // free-form user data
                continue;
            }
            if key == "type" {
                self.refs.type_is_tool_use = false;
                map.next_value_seed(Value {
                    refs: &mut *self.refs,
                    slot: Slot::Type,
                })?;
                tool_use |= self.refs.type_is_tool_use;
                self.refs.type_is_tool_use = false;
                continue;
            }
            if self.top && key == "previous_response_id" {
                self.refs.previous_response = true;
            }
            if key == "input" {
                let aside = input.get_or_insert_with(BodyRefs::default);
                map.next_value_seed(Walk {
                    refs: aside,
                    top: false,
                })?;
                continue;
            }
            let slot = if self.top && key == "store" {
                Slot::Store
            } else if ONE.contains(&key) {
                Slot::One {
                    conversation: key == "conversation",
                }
            } else if MANY.contains(&key) {
                Slot::Many
            } else {
                Slot::Plain
            };
            map.next_value_seed(Value {
                refs: &mut *self.refs,
                slot,
            })?;
        }
        if let Some(aside) = input.filter(|_| !tool_use) {
            aside.ids.iter().for_each(|id| push(&mut self.refs.ids, id));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        if self.slot == Slot::Store {
            self.refs.store = Some(self.refs.store.unwrap_or(false) || b);
        }
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        match self.slot {
            Slot::One { .. } => push(&mut self.refs.ids, s),
            Slot::Type => self.refs.type_is_tool_use = s.ends_with("tool_use"),
            _ => {}
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let slot = if self.slot == Slot::Many {
            Slot::One {
                conversation: false,
            }
        } else {
            Slot::Plain
        };
        while seq
            .next_element_seed(Value {
                refs: &mut *self.refs,
                slot,
            })?
            .is_some()
        {}
        // A `type` that is not a string marks nothing, whatever it contains.
        self.refs.type_is_tool_use = false;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.slot != (Slot::One { conversation: true }) {
            Walk {
                refs: &mut *self.refs,
                top: false,
            }
            .visit_map(map)?;
            self.refs.type_is_tool_use = false;
            return Ok(());
        }
        // `conversation: {"id": ...}`
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = if key == "id" {
                Slot::One {
                    conversation: false,
                }
            } else {
                Slot::Plain
            };
            map.next_value_seed(Value {
                refs: &mut *self.refs,
                slot,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(body: &str) -> Vec<String> {
        scan(body.as_bytes())
            .map(|r| r.ids)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// The quick scan's definition: a substring search for every key with its closing quote,
    /// and for `\u`.
    fn may_reference_by_search(body: &[u8]) -> bool {
        ONE.iter()
            .chain(MANY)
            .chain(&["store"])
            .map(|k| format!("{k}\""))
            .chain(std::iter::once("\\u".to_owned()))
            .any(|n| memchr::memmem::find(body, n.as_bytes()).is_some())
    }

    #[test]
    fn the_quick_scan_finds_exactly_what_a_search_for_each_key_finds() {
        let mut cases: Vec<Vec<u8>> = [
            &br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#[..],
            br#"{"store":true}"#,
            br#"store""#,
            br#"""#,
            br#"\"#,
            br#"\u"#,
            br#"x\\u"#,
            br#"x\\"u"#,
            br#"{"a":"file_id"}"#,
            br#"{"a":"file_id\""}"#,
            br#"{"a":"file_i"d"}"#,
            br#"{"stores":1,"restore":2}"#,
            br#"{"x_container":1}"#,
            br#"{"conversation_id":1}"#,
            br#"{"file_ids_x":[]}"#,
            br#"{"vector_store_ids":["vs_1"]}"#,
            br#"{"content":"\n\t\"quoted\" \\ end"}"#,
            b"",
        ]
        .iter()
        .map(|c| c.to_vec())
        .collect();
        for k in ONE.iter().chain(MANY).chain(&["store"]) {
            let body = format!(r#"{{"a":1,"{k}":"v"}}"#);
            for cut in 0..=body.len() {
                cases.push(body.as_bytes()[..cut].to_vec());
                cases.push(body.as_bytes()[cut..].to_vec());
            }
            // The key without its closing quote, and with a byte between.
            cases.push(format!(r#"{{"{k}x":1}}"#).into_bytes());
            cases.push(k.as_bytes().to_vec());
        }
        for c in &cases {
            assert_eq!(
                may_reference(c),
                may_reference_by_search(c),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn plain_inference_names_nothing() {
        assert!(ids(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"file_id please"}]}"#
        )
        .is_empty());
        assert!(ids("not json").is_empty());
        assert!(ids("").is_empty());
    }

    #[test]
    fn finds_nested_references() {
        assert_eq!(
            ids(r#"{"input_file_id":"file-1","endpoint":"/v1/chat/completions"}"#),
            ["file-1"]
        );
        assert_eq!(
            ids(r#"{"training_file":"file-2","validation_file":"file-3","model":"m"}"#),
            ["file-2", "file-3"]
        );
        assert_eq!(
            ids(
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-4"}}]}]}"#
            ),
            ["file-4"]
        );
        assert_eq!(
            ids(
                r#"{"model":"m","tools":[{"type":"file_search","vector_store_ids":["vs_1","vs_2"]}],"input":[{"role":"user","content":[{"type":"input_file","file_id":"file-5"}]}]}"#
            ),
            ["vs_1", "vs_2", "file-5"]
        );
        assert_eq!(ids(r#"{"file_ids":["file-6","file-6"]}"#), ["file-6"]);
        assert_eq!(ids(r#"{"conversation":{"id":"conv_1"}}"#), ["conv_1"]);
        assert_eq!(ids(r#"{"container":"cntr_1"}"#), ["cntr_1"]);
    }

    #[test]
    fn escaped_keys_are_still_found() {
        assert_eq!(ids(r#"{"input\u005ffile_id":"file-1"}"#), ["file-1"]);
        assert_eq!(ids(r#"{"\u0066ile_id":"file-2"}"#), ["file-2"]);
    }

    #[test]
    fn metadata_and_schemas_are_not_references() {
        assert!(ids(r#"{"metadata":{"file_id":"mine"}}"#).is_empty());
        assert!(ids(r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"file_id":"report-7"}}]}]}"#).is_empty());
        assert!(
            ids(r#"{"content":[{"input":{"file_id":"report-7"},"type":"tool_use"}]}"#).is_empty()
        );
        // Anything else's `input` is walked (the Responses API's input items).
        assert_eq!(
            ids(r#"{"input":[{"type":"input_file","file_id":"file-1"}]}"#),
            ["file-1"]
        );
        // A `type` that only contains a tool_use marks nothing.
        assert_eq!(
            ids(r#"{"type":{"type":"tool_use"},"input":{"file_id":"file-2"}}"#),
            ["file-2"]
        );
        // Values under `type` and `store` are walked too.
        assert_eq!(
            ids(r#"{"type":[{"file_id":"file-3"}],"store":{"file_id":"file-4"}}"#),
            ["file-3", "file-4"]
        );
        assert!(ids(r#"{"tools":[{"type":"function","function":{"parameters":{"properties":{"file_id":{"type":"string"}}}}}]}"#).is_empty());
    }

    #[test]
    fn store_and_previous_response() {
        let r = scan(br#"{"model":"m","store":false}"#).unwrap_or_default();
        assert_eq!(r.store, Some(false));
        let r = scan(br#"{"model":"m","store":false,"store":true}"#).unwrap_or_default();
        assert_eq!(r.store, Some(true));
        let r = scan(br#"{"model":"m","previous_response_id":"resp_1"}"#).unwrap_or_default();
        assert!(r.previous_response);
        assert_eq!(r.ids, ["resp_1"]);
        assert_eq!(scan(br#"{"model":"m"}"#), Ok(BodyRefs::default()));
    }

    #[test]
    fn every_value_of_a_duplicated_key_is_checked() {
        assert_eq!(
            ids(r#"{"input_file_id":"file-mine","input_file_id":"file-theirs"}"#),
            ["file-mine", "file-theirs"]
        );
    }

    #[test]
    fn an_unparseable_body_that_may_name_objects_is_refused() {
        let deep = format!(
            "{}{{\"file_id\":\"x\"}}{}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(scan(deep.as_bytes()), Err(Reject::InvalidJson));
        assert_eq!(scan(br#"{"file_id":"x""#), Err(Reject::InvalidJson));
        assert_eq!(
            scan(br#"{"file_id":"x"} trailing"#),
            Err(Reject::InvalidJson)
        );
    }
}
