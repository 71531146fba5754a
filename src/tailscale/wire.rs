//! Serde helpers for the API's JSON quirks: Go encodes nil slices as `null`, and unset
//! timestamps arrive as `""`, as Go's zero time, or not at all.
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// `null` becomes the type's default (empty list, empty string, `false`).
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `null` and `""` both become `None`, for optional strings Go sends as empty.
pub(crate) fn non_empty<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(deserializer)?.filter(|text| !text.is_empty()))
}

/// Optional RFC 3339 timestamps. `null`, `""` and Go's zero time (`0001-01-01T00:00:00Z`)
/// mean "not set" and become `None`; anything else must be RFC 3339. Use with
/// `#[serde(default, with = "timestamp", skip_serializing_if = "Option::is_none")]`.
pub(crate) mod timestamp {
    use super::*;

    pub(crate) fn deserialize<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
    where
        D: Deserializer<'de>,
    {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub(crate) fn serialize<S>(
        value: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
    {
        match value {
            Some(time) => {
                serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Option<DateTime<Utc>>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let time = DateTime::parse_from_rfc3339(text)
            .map_err(|err| format!("invalid timestamp {text:?}: {err}"))?
            .with_timezone(&Utc);
        // Go's zero time marks an unset time.Time that was not omitted.
        Ok((time.year() > 1).then_some(time))
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default)]
    struct Sample {
        #[serde(deserialize_with = "nullable")]
        tags: Vec<String>,
        #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
        seen: Option<DateTime<Utc>>,
    }

    #[test]
    fn null_lists_become_empty() {
        let sample: Sample = serde_json::from_str(r#"{"tags": null}"#).unwrap();
        assert!(sample.tags.is_empty());
    }

    #[test]
    fn unset_timestamps_become_none() {
        for json in [
            r#"{}"#,
            r#"{"seen": null}"#,
            r#"{"seen": ""}"#,
            r#"{"seen": "0001-01-01T00:00:00Z"}"#,
        ] {
            let sample: Sample = serde_json::from_str(json).unwrap();
            assert_eq!(sample.seen, None, "{json}");
        }
    }

    #[test]
    fn timestamps_parse_with_offsets_and_serialize_back() {
        let sample: Sample =
            serde_json::from_str(r#"{"seen": "2024-05-01T12:00:00+02:00"}"#).unwrap();
        assert_eq!(
            sample.seen.unwrap().to_rfc3339(),
            "2024-05-01T10:00:00+00:00"
        );
        let json = serde_json::to_value(&sample).unwrap();
        assert_eq!(json["seen"], "2024-05-01T10:00:00Z");
    }

    #[test]
    fn malformed_timestamps_are_errors() {
        let err = serde_json::from_str::<Sample>(r#"{"seen": "yesterday"}"#).unwrap_err();
        assert!(err.to_string().contains("yesterday"));
    }
}
