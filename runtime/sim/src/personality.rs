//! A dext's `Info.plist`: its `IOKitPersonalities`, as the simulator starts them.
//!
//! On a Mac the kernel matches each personality against the registry and
//! starts its `IOUserClass` on the provider it matched (docs/driverkit.md §9).
//! Here a personality names its provider class (`IOProviderClass`) and the
//! host gives the service a stand-in for it ([`Provider`]). Every key of a
//! personality is kept and handed to the service as its properties;
//! unexpanded build variables such as `$(PRODUCT_BUNDLE_IDENTIFIER)` are
//! kept as written, because Xcode expands them only when it builds the
//! bundle, and a plist straight from a source tree still has them.

use std::fmt;
use std::path::{Path, PathBuf};

/// The provider a service is started on.
///
/// The simulator gives a service a provider object standing for the nub
/// its personality matched. In this slice that is only `IOUserResources`,
/// the provider of a dext that matches no hardware (Apple's NullDriver
/// sample). Other provider classes (`IOUSBHostInterface`, `IOPCIDevice`, …)
/// are refused with [`PersonalityError::UnsupportedProvider`]: a variant
/// per provider is where their stand-ins plug in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `IOUserResources`: a plain IOService stands for it.
    IOUserResources,
}

impl Provider {
    /// The provider a personality's `IOProviderClass` names, if the
    /// simulator has one.
    pub fn from_class(class: &str) -> Option<Provider> {
        match class {
            "IOUserResources" => Some(Provider::IOUserResources),
            _ => None,
        }
    }

    /// Its class name, as a personality spells it.
    pub fn class_name(self) -> &'static str {
        match self {
            Provider::IOUserResources => "IOUserResources",
        }
    }
}

/// One entry of `IOKitPersonalities`.
#[derive(Debug, Clone, PartialEq)]
pub struct Personality {
    /// Its key in `IOKitPersonalities`.
    pub name: String,
    /// `IOUserClass`: the dext's class the host makes.
    pub user_class: String,
    /// `IOProviderClass`, as written.
    pub provider_class: String,
    /// `UserClientProperties` → `IOUserClass`, when the personality has one.
    pub user_client_class: Option<String>,
    /// Every key, as written (the service's properties).
    pub properties: plist::Dictionary,
}

impl Personality {
    /// The provider the host gives the service, or why it cannot.
    pub fn provider(&self, plist: &Path) -> Result<Provider, PersonalityError> {
        Provider::from_class(&self.provider_class).ok_or_else(|| {
            PersonalityError::UnsupportedProvider {
                path: plist.to_owned(),
                personality: self.name.clone(),
                class: self.provider_class.clone(),
            }
        })
    }
}

/// Why a plist's personalities could not be read.
#[derive(Debug)]
pub enum PersonalityError {
    /// The file could not be read.
    Unreadable { path: PathBuf, error: std::io::Error },
    /// Neither an XML nor a binary plist; `message` is the parser's, with
    /// its position.
    NotAPlist { path: PathBuf, message: String },
    /// The key path does not hold what it must (`what`).
    WrongType { path: PathBuf, key_path: String, what: &'static str },
    /// No `IOKitPersonalities`, or an empty one.
    NoPersonalities { path: PathBuf },
    /// A required key is missing.
    MissingKey { path: PathBuf, key_path: String },
    /// A value the runtime's collections cannot hold (a real or a date).
    Unconvertible { path: PathBuf, key_path: String, what: &'static str },
    /// The personality's `IOProviderClass` is not one the simulator provides.
    UnsupportedProvider { path: PathBuf, personality: String, class: String },
}

impl fmt::Display for PersonalityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersonalityError::Unreadable { path, error } => {
                write!(f, "{}: cannot read it: {error}", path.display())
            }
            PersonalityError::NotAPlist { path, message } => {
                write!(f, "{}: not a property list (XML or binary): {message}", path.display())
            }
            PersonalityError::WrongType { path, key_path, what } => {
                write!(f, "{}: {key_path} must be {what}", path.display())
            }
            PersonalityError::NoPersonalities { path } => write!(
                f,
                "{}: no IOKitPersonalities: a dext's Info.plist names the services to \
                 start in a dictionary of personalities under that key",
                path.display()
            ),
            PersonalityError::MissingKey { path, key_path } => {
                write!(f, "{}: {key_path} is missing", path.display())
            }
            PersonalityError::Unconvertible { path, key_path, what } => write!(
                f,
                "{}: {key_path} is {what}, which a DriverKit property cannot hold here \
                 (strings, integers, booleans, data, arrays and dictionaries can)",
                path.display()
            ),
            PersonalityError::UnsupportedProvider { path, personality, class } => write!(
                f,
                "{}: personality {personality:?}: provider class {class:?} is not supported \
                 by the simulator yet (supported: IOUserResources)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PersonalityError {}

/// Reads the personalities of the plist at `path`, in key order.
pub fn read(path: &Path) -> Result<Vec<Personality>, PersonalityError> {
    let bytes = std::fs::read(path)
        .map_err(|error| PersonalityError::Unreadable { path: path.to_owned(), error })?;
    parse(path, &bytes)
}

/// Parses a plist's bytes; `path` names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Personality>, PersonalityError> {
    let value = plist::Value::from_reader(std::io::Cursor::new(bytes)).map_err(|error| {
        PersonalityError::NotAPlist { path: path.to_owned(), message: error.to_string() }
    })?;
    let wrong = |key_path: &str, what| PersonalityError::WrongType {
        path: path.to_owned(),
        key_path: key_path.to_owned(),
        what,
    };
    let root = value.as_dictionary().ok_or_else(|| wrong("the top level", "a dictionary"))?;
    let personalities = match root.get("IOKitPersonalities") {
        None => return Err(PersonalityError::NoPersonalities { path: path.to_owned() }),
        Some(value) => {
            value.as_dictionary().ok_or_else(|| wrong("IOKitPersonalities", "a dictionary"))?
        }
    };
    if personalities.is_empty() {
        return Err(PersonalityError::NoPersonalities { path: path.to_owned() });
    }
    let mut out = Vec::with_capacity(personalities.len());
    for (name, value) in personalities {
        let here = format!("IOKitPersonalities.{name}");
        let properties = value.as_dictionary().ok_or_else(|| wrong(&here, "a dictionary"))?;
        let string = |dictionary: &plist::Dictionary, key: &str, at: &str| {
            let key_path = format!("{at}.{key}");
            match dictionary.get(key) {
                None => Err(PersonalityError::MissingKey { path: path.to_owned(), key_path }),
                Some(value) => {
                    value.as_string().map(str::to_owned).ok_or_else(|| wrong(&key_path, "a string"))
                }
            }
        };
        let user_class = string(properties, "IOUserClass", &here)?;
        let provider_class = string(properties, "IOProviderClass", &here)?;
        let user_client_class = match properties.get("UserClientProperties") {
            None => None,
            Some(value) => {
                let at = format!("{here}.UserClientProperties");
                let dictionary = value.as_dictionary().ok_or_else(|| wrong(&at, "a dictionary"))?;
                Some(string(dictionary, "IOUserClass", &at)?)
            }
        };
        check_convertible(path, &here, value)?;
        out.push(Personality {
            name: name.clone(),
            user_class,
            provider_class,
            user_client_class,
            properties: properties.clone(),
        });
    }
    Ok(out)
}

/// Refuses, with its key path, a value the runtime's collections cannot hold.
fn check_convertible(
    path: &Path,
    key_path: &str,
    value: &plist::Value,
) -> Result<(), PersonalityError> {
    let refuse = |what| {
        Err(PersonalityError::Unconvertible {
            path: path.to_owned(),
            key_path: key_path.to_owned(),
            what,
        })
    };
    match value {
        plist::Value::Dictionary(dictionary) => {
            for (key, value) in dictionary {
                check_convertible(path, &format!("{key_path}.{key}"), value)?;
            }
            Ok(())
        }
        plist::Value::Array(array) => {
            for (index, value) in array.iter().enumerate() {
                check_convertible(path, &format!("{key_path}[{index}]"), value)?;
            }
            Ok(())
        }
        plist::Value::String(_)
        | plist::Value::Integer(_)
        | plist::Value::Boolean(_)
        | plist::Value::Data(_) => Ok(()),
        plist::Value::Real(_) => refuse("a real number"),
        plist::Value::Date(_) => refuse("a date"),
        plist::Value::Uid(_) => refuse("a keyed-archiver UID"),
        _ => refuse("a value of an unknown plist type"),
    }
}

/// An integer as the runtime's 64-bit OSNumber holds it: a negative one in
/// two's complement, as OSNumber stores a signed value.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn integer_bits(integer: plist::Integer) -> u64 {
    integer.as_unsigned().unwrap_or_else(|| integer.as_signed().unwrap_or(0) as u64)
}

#[cfg(target_os = "linux")]
mod convert {
    use super::integer_bits;
    use crate::driverkit::{Array, Dictionary};
    use dextlink::IoReturn;

    /// The personality as the service's property dictionary.
    pub fn dictionary(properties: &plist::Dictionary) -> Result<Dictionary, IoReturn> {
        let out = Dictionary::new();
        for (key, value) in properties {
            match value {
                plist::Value::String(text) => out.set_string(key, text)?,
                plist::Value::Integer(integer) => out.set_number(key, integer_bits(*integer))?,
                plist::Value::Boolean(value) => out.set_bool(key, *value)?,
                plist::Value::Data(bytes) => out.set_data(key, bytes)?,
                plist::Value::Dictionary(inner) => out.set_dictionary(key, &dictionary(inner)?)?,
                plist::Value::Array(items) => out.set_array(key, &array(items)?)?,
                // `parse` refused every other kind, with its key path.
                _ => return Err(IoReturn::BAD_ARGUMENT),
            }
        }
        Ok(out)
    }

    fn array(items: &[plist::Value]) -> Result<Array, IoReturn> {
        let out = Array::new()?;
        for value in items {
            match value {
                plist::Value::String(text) => out.push_string(text)?,
                plist::Value::Integer(integer) => out.push_number(integer_bits(*integer))?,
                plist::Value::Boolean(value) => out.push_bool(*value)?,
                plist::Value::Data(bytes) => out.push_data(bytes)?,
                plist::Value::Dictionary(inner) => out.push_dictionary(&dictionary(inner)?)?,
                plist::Value::Array(inner) => out.push_array(&array(inner)?)?,
                _ => return Err(IoReturn::BAD_ARGUMENT),
            }
        }
        Ok(out)
    }
}

impl Personality {
    /// Its USB matching keys (`IOProviderClass`, `idVendor`, `idProduct`,
    /// `bConfigurationValue`, `bInterfaceNumber`): `None` for an absent key
    /// (it matches anything); a key that is not an integer in its range is
    /// kept as the type's maximum, so that it matches no real interface
    /// rather than being ignored.
    pub fn usb_keys(&self) -> crate::usb_match::UsbMatchKeys {
        let number = |key: &str| -> Option<u64> {
            self.properties.get(key).map(|value| match value {
                plist::Value::Integer(integer) => integer_bits(*integer),
                _ => u64::MAX,
            })
        };
        let narrow16 = |key: &str| number(key).map(|n| u16::try_from(n).unwrap_or(u16::MAX));
        let narrow8 = |key: &str| number(key).map(|n| u8::try_from(n).unwrap_or(u8::MAX));
        crate::usb_match::UsbMatchKeys {
            provider_class: self.provider_class.clone(),
            id_vendor: narrow16("idVendor"),
            id_product: narrow16("idProduct"),
            b_configuration_value: narrow8("bConfigurationValue"),
            b_interface_number: narrow8("bInterfaceNumber"),
        }
    }
}

#[cfg(target_os = "linux")]
impl Personality {
    /// The personality as the runtime's OSDictionary (every key).
    pub fn to_dictionary(&self) -> Result<crate::driverkit::Dictionary, dextlink::IoReturn> {
        convert::dictionary(&self.properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NULL_DRIVER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>CFBundleIdentifier</key><string>$(PRODUCT_BUNDLE_IDENTIFIER)</string>
    <key>IOKitPersonalities</key>
    <dict>
        <key>NullDriver</key>
        <dict>
            <key>CFBundleIdentifier</key><string>$(PRODUCT_BUNDLE_IDENTIFIER)</string>
            <key>CFBundleIdentifierKernel</key><string>com.apple.kpi.iokit</string>
            <key>IOClass</key><string>IOUserService</string>
            <key>IOMatchCategory</key><string>com.example.NullDriver</string>
            <key>IOProviderClass</key><string>IOUserResources</string>
            <key>IOResourceMatch</key><string>IOKit</string>
            <key>IOUserClass</key><string>NullDriver</string>
            <key>IOUserServerName</key><string>com.example.NullDriver</string>
            <key>IOProbeScore</key><integer>-5</integer>
            <key>Flags</key><array><string>a</string><integer>7</integer><true/></array>
            <key>UserClientProperties</key>
            <dict>
                <key>IOClass</key><string>IOUserUserClient</string>
                <key>IOUserClass</key><string>NullDriverUserClient</string>
            </dict>
        </dict>
    </dict>
</dict>
</plist>"#;

    fn parse_text(text: &str) -> Result<Vec<Personality>, PersonalityError> {
        parse(Path::new("Info.plist"), text.as_bytes())
    }

    #[test]
    fn personalities_keep_every_key_and_unexpanded_variables() {
        let personalities = parse_text(NULL_DRIVER).unwrap();
        assert_eq!(personalities.len(), 1);
        let p = &personalities[0];
        assert_eq!(p.name, "NullDriver");
        assert_eq!(p.user_class, "NullDriver");
        assert_eq!(p.user_client_class.as_deref(), Some("NullDriverUserClient"));
        assert_eq!(p.provider(Path::new("Info.plist")).unwrap(), Provider::IOUserResources);
        assert_eq!(
            p.properties.get("CFBundleIdentifier").and_then(|v| v.as_string()),
            Some("$(PRODUCT_BUNDLE_IDENTIFIER)")
        );
        assert_eq!(p.properties.len(), 11);
        assert_eq!(
            integer_bits(
                p.properties.get("IOProbeScore").unwrap().as_signed_integer().unwrap().into()
            ),
            (-5i64) as u64
        );
    }

    #[test]
    fn binary_plists_parse_the_same() {
        let value = plist::Value::from_reader_xml(NULL_DRIVER.as_bytes()).unwrap();
        let mut binary = Vec::new();
        value.to_writer_binary(&mut binary).unwrap();
        assert!(binary.starts_with(b"bplist00"));
        let from_binary = parse(Path::new("Info.plist"), &binary).unwrap();
        assert_eq!(from_binary, parse_text(NULL_DRIVER).unwrap());
    }

    #[test]
    fn errors_name_the_file_and_the_key_path() {
        let error = |text: &str| parse_text(text).unwrap_err().to_string();
        let message = error("<plist><dict><key>x</key></plist>");
        assert!(message.starts_with("Info.plist: not a property list"), "{message}");
        let message =
            error("<plist><dict><key>CFBundleName</key><string>x</string></dict></plist>");
        assert!(message.starts_with("Info.plist: no IOKitPersonalities"), "{message}");
        let message = error(&NULL_DRIVER.replacen(
            "<key>IOUserClass</key><string>NullDriver</string>",
            "",
            1,
        ));
        assert_eq!(message, "Info.plist: IOKitPersonalities.NullDriver.IOUserClass is missing");
        let message = error(
            &NULL_DRIVER.replace("<key>IOUserClass</key><string>NullDriverUserClient</string>", ""),
        );
        assert_eq!(
            message,
            "Info.plist: IOKitPersonalities.NullDriver.UserClientProperties.IOUserClass is missing"
        );
        let message = error(&NULL_DRIVER.replace("<integer>7</integer>", "<real>1.5</real>"));
        assert!(
            message
                .starts_with("Info.plist: IOKitPersonalities.NullDriver.Flags[1] is a real number"),
            "{message}"
        );
    }

    #[test]
    fn other_providers_are_refused_naming_the_personality() {
        let text = NULL_DRIVER.replace(">IOUserResources<", ">IOUSBHostInterface<");
        let personalities = parse_text(&text).unwrap();
        let message = personalities[0].provider(Path::new("Info.plist")).unwrap_err().to_string();
        assert_eq!(
            message,
            "Info.plist: personality \"NullDriver\": provider class \"IOUSBHostInterface\" is \
             not supported by the simulator yet (supported: IOUserResources)"
        );
    }
}
