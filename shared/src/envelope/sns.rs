//! SNS envelopes (see [SNS envelopes](super#sns-envelopes)).

use serde::Deserialize;
use serde_json::Value;

use super::wire::{from_value, required};
use super::{Layer, Message, ParseError, parse_json, parse_value};

/// The SNS `Type` that carries a message.
const SNS_NOTIFICATION: &str = "Notification";

/// `{"Type":"Notification","Message":".."}`; signatures and ids are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SnsEnvelopeWire {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// Parses an SNS notification by parsing the message it carries.
pub(super) fn parse_sns(value: &Value) -> Result<Message, ParseError> {
    let envelope: SnsEnvelopeWire = from_value(value, "SNS envelope")?;
    let kind = required(envelope.kind, "Type")?;
    if kind != SNS_NOTIFICATION {
        return Err(ParseError::NotSnsNotification(kind));
    }
    let inner = required(envelope.message, "Message")?;
    parse_json(&inner)
        .and_then(|inner| parse_value(&inner, Layer::SnsMessage))
        .map_err(|error| ParseError::BadSnsMessage(Box::new(error)))
}
