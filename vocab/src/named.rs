//! Values of a closed set written by their names: in the store, on the wire, on the command
//! line. Each value's name is written once, in its type's `as_str`; reading a name back, and
//! the error a person sees for a name that is none of them, is this one rule for every set.

/// A closed set of values, each with one name.
pub trait Named: Copy + 'static {
    /// Every value, in the order an error lists them.
    const ALL: &'static [Self];
    /// What a value is, as an error calls it: "wipe scope".
    const WHAT: &'static str;

    /// The value's name.
    fn name(self) -> &'static str;

    /// The value called `text`; `None` if none is.
    fn named(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|value| value.name() == text)
    }

    /// The value called `text`, or an error that says what was given and lists every name.
    fn parse_name(text: &str) -> Result<Self, String> {
        Self::named(text)
            .ok_or_else(|| format!("unknown {} {text:?}: use {}", Self::WHAT, Self::choices()))
    }

    /// Every name, as a sentence lists them: "a, b or c".
    fn choices() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|value| value.name()).collect();
        match names.split_last() {
            None => String::new(),
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

/// Gives a closed set's values their names, each written once: `ALL` and `NAMES` (every value
/// and every name, in the order given), `as_str` (a `const fn`), [`Named`], `FromStr` (its
/// error lists every name) and `Display`.
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// pub enum Light {
///     On,
///     Off,
/// }
///
/// ward_vocab::names!(Light, "light" { On => "on", Off => "off" });
///
/// assert_eq!("on".parse::<Light>(), Ok(Light::On));
/// assert_eq!(Light::Off.to_string(), "off");
/// assert_eq!(Light::NAMES, ["on", "off"]);
/// assert_eq!(
///     "dim".parse::<Light>(),
///     Err("unknown light \"dim\": use on or off".to_owned())
/// );
/// ```
#[macro_export]
macro_rules! names {
    ($set:ident, $what:literal { $($value:ident => $name:literal),+ $(,)? }) => {
        impl $set {
            /// Every value, in the order named.
            pub const ALL: [Self; [$($name),+].len()] = [$($set::$value),+];
            /// Every value's name, in the same order.
            pub const NAMES: [&'static str; [$($name),+].len()] = [$($name),+];

            /// The value's name, as stored, sent and typed.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($set::$value => $name,)+
                }
            }
        }

        impl $crate::Named for $set {
            const ALL: &'static [Self] = &$set::ALL;
            const WHAT: &'static str = $what;

            fn name(self) -> &'static str {
                self.as_str()
            }
        }

        impl ::std::str::FromStr for $set {
            type Err = ::std::string::String;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                <Self as $crate::Named>::parse_name(s)
            }
        }

        impl ::std::fmt::Display for $set {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
// The macro makes `as_str` public, as it is for the sets it serves; this one is the test's.
#[allow(unreachable_pub)]
mod tests {
    use super::Named;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Colour {
        Red,
        Green,
        Blue,
    }

    crate::names!(Colour, "colour" { Red => "red", Green => "green", Blue => "blue" });

    #[test]
    fn a_name_reads_back_as_its_value_and_anything_else_is_refused_with_the_choices() {
        for colour in Colour::ALL {
            assert_eq!(Colour::parse_name(colour.name()), Ok(colour));
            assert_eq!(colour.to_string().parse(), Ok(colour));
        }
        assert_eq!(
            Colour::parse_name("Red"),
            Err("unknown colour \"Red\": use red, green or blue".to_owned())
        );
        assert_eq!(Colour::named(""), None);
        assert_eq!(Colour::NAMES, ["red", "green", "blue"]);
    }
}
