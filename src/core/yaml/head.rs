//! A document's `apiVersion` and `kind`, read by a visitor that skips
//! everything else: what stage discovery needs from every YAML file of a
//! repository, without a value tree of files that hold no stage.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Head;

/// `None` for an empty (null) document, which parsing skips.
pub(super) struct MaybeHead(pub Option<Head>);

impl<'de> Deserialize<'de> for MaybeHead {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HeadVisitor)
    }
}

struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = MaybeHead;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML document")
    }

    fn visit_unit<E: de::Error>(self) -> Result<MaybeHead, E> {
        Ok(MaybeHead(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<MaybeHead, E> {
        Ok(MaybeHead(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeHead, A::Error> {
        let mut head = Head::default();
        while let Some(key) = map.next_key::<Text>()? {
            let field = match key.0.as_deref() {
                Some("apiVersion") => &mut head.api_version,
                Some("kind") => &mut head.kind,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if let Some(text) = map.next_value::<Text>()?.0 {
                *field = text;
            }
        }
        Ok(MaybeHead(Some(head)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MaybeHead, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(MaybeHead(Some(Head::default())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeHead, E> {
        Ok(MaybeHead(Some(Head::default())))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<MaybeHead, E> {
        Ok(MaybeHead(Some(Head::default())))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<MaybeHead, E> {
        Ok(MaybeHead(Some(Head::default())))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeHead, E> {
        Ok(MaybeHead(Some(Head::default())))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<MaybeHead, E> {
        Ok(MaybeHead(Some(Head::default())))
    }
}

/// A string, or `None` for any other node (skipped).
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
        Ok(Text(Some(s.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(Text(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(Text(None))
    }
}
