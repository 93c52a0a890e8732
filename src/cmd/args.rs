//! The command-line spelling of the render layer's choices (`--format`, `--color`): clap stays
//! in cmd, the enums stay plain in `render`.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::render::{ColorChoice, DocFormat, Format};

impl ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Format::Table, Format::Json, Format::Yaml]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Yaml => "yaml",
        }))
    }
}

impl ValueEnum for DocFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[DocFormat::Json, DocFormat::Yaml]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            DocFormat::Json => "json",
            DocFormat::Yaml => "yaml",
        }))
    }
}

impl ValueEnum for ColorChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &[ColorChoice::Auto, ColorChoice::Always, ColorChoice::Never]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            ColorChoice::Auto => PossibleValue::new("auto").help(
                "On a terminal, unless NO_COLOR is set; FORCE_COLOR or CLICOLOR_FORCE force it",
            ),
            ColorChoice::Always => PossibleValue::new("always"),
            ColorChoice::Never => PossibleValue::new("never"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant has its spelling and parses back from it.
    #[test]
    fn spellings_round_trip() {
        for f in Format::value_variants() {
            let name = f.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(Format::from_str(&name, false), Ok(*f));
        }
        for f in DocFormat::value_variants() {
            let name = f.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(DocFormat::from_str(&name, false), Ok(*f));
        }
        for c in ColorChoice::value_variants() {
            let name = c.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(ColorChoice::from_str(&name, false), Ok(*c));
        }
    }
}
