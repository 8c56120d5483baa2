//! Personality matching for USB: whether a personality's keys match a
//! simulated USB interface, as IOKit's matching of an `IOUSBHostInterface`
//! nub compares them (`IOProviderClass`, then every USB key the
//! personality gives: `idVendor`, `idProduct`, `bConfigurationValue`,
//! `bInterfaceNumber`; a key it leaves out matches anything). The hosting
//! side's personality parser calls [`match_usb_interface`] with the values
//! it read from an Info.plist.

use std::fmt;

/// The provider class a USB interface driver's personality names.
pub const USB_INTERFACE_PROVIDER_CLASS: &str = "IOUSBHostInterface";

/// The USB keys of one personality (`None`: the key is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsbMatchKeys {
    pub provider_class: String,
    pub id_vendor: Option<u16>,
    pub id_product: Option<u16>,
    pub b_configuration_value: Option<u8>,
    pub b_interface_number: Option<u8>,
}

/// What a simulated interface is: its device's ids and its own numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsbInterfaceIdentity {
    pub id_vendor: u16,
    pub id_product: u16,
    pub b_configuration_value: u8,
    pub b_interface_number: u8,
}

/// Why a personality does not match; names the key and both values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbMismatch {
    /// `IOProviderClass` is not `IOUSBHostInterface`.
    ProviderClass(String),
    /// A key's value differs: (key, the personality's value, the interface's).
    Key { key: &'static str, personality: u16, interface: u16 },
}

impl fmt::Display for UsbMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsbMismatch::ProviderClass(class) => write!(
                f,
                "IOProviderClass is \"{class}\", not \"{USB_INTERFACE_PROVIDER_CLASS}\": \
                 the personality does not match a USB interface"
            ),
            UsbMismatch::Key { key, personality, interface } => write!(
                f,
                "{key} is {personality:#06x} in the personality but {interface:#06x} on the interface"
            ),
        }
    }
}

impl std::error::Error for UsbMismatch {}

/// `Ok` when the personality matches the interface; else the first key
/// that differs, in the order IOProviderClass, idVendor, idProduct,
/// bConfigurationValue, bInterfaceNumber.
pub fn match_usb_interface(
    keys: &UsbMatchKeys,
    interface: &UsbInterfaceIdentity,
) -> Result<(), UsbMismatch> {
    if keys.provider_class != USB_INTERFACE_PROVIDER_CLASS {
        return Err(UsbMismatch::ProviderClass(keys.provider_class.clone()));
    }
    let pairs: [(&'static str, Option<u16>, u16); 4] = [
        ("idVendor", keys.id_vendor, interface.id_vendor),
        ("idProduct", keys.id_product, interface.id_product),
        (
            "bConfigurationValue",
            keys.b_configuration_value.map(u16::from),
            u16::from(interface.b_configuration_value),
        ),
        (
            "bInterfaceNumber",
            keys.b_interface_number.map(u16::from),
            u16::from(interface.b_interface_number),
        ),
    ];
    for (key, wanted, actual) in pairs {
        if let Some(wanted) = wanted
            && wanted != actual
        {
            return Err(UsbMismatch::Key { key, personality: wanted, interface: actual });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERFACE: UsbInterfaceIdentity = UsbInterfaceIdentity {
        id_vendor: 0x1209,
        id_product: 0x0001,
        b_configuration_value: 1,
        b_interface_number: 0,
    };

    fn keys() -> UsbMatchKeys {
        UsbMatchKeys {
            provider_class: USB_INTERFACE_PROVIDER_CLASS.into(),
            id_vendor: Some(0x1209),
            id_product: Some(0x0001),
            b_configuration_value: Some(1),
            b_interface_number: Some(0),
        }
    }

    #[test]
    fn all_keys_equal_match() {
        assert_eq!(match_usb_interface(&keys(), &INTERFACE), Ok(()));
    }

    #[test]
    fn absent_keys_match_anything() {
        let only_class = UsbMatchKeys {
            provider_class: USB_INTERFACE_PROVIDER_CLASS.into(),
            ..Default::default()
        };
        assert_eq!(match_usb_interface(&only_class, &INTERFACE), Ok(()));
    }

    #[test]
    fn another_provider_class_is_named() {
        let resources = UsbMatchKeys { provider_class: "IOUserResources".into(), ..keys() };
        let error = match_usb_interface(&resources, &INTERFACE).unwrap_err();
        assert_eq!(error, UsbMismatch::ProviderClass("IOUserResources".into()));
        assert!(error.to_string().contains("\"IOUserResources\""), "{error}");
    }

    #[test]
    fn the_first_differing_key_is_named_with_both_values() {
        let other_product = UsbMatchKeys { id_product: Some(0x0002), ..keys() };
        let error = match_usb_interface(&other_product, &INTERFACE).unwrap_err();
        assert_eq!(error, UsbMismatch::Key { key: "idProduct", personality: 2, interface: 1 });
        assert_eq!(
            error.to_string(),
            "idProduct is 0x0002 in the personality but 0x0001 on the interface"
        );
        let other_interface = UsbMatchKeys { b_interface_number: Some(1), ..keys() };
        assert!(matches!(
            match_usb_interface(&other_interface, &INTERFACE),
            Err(UsbMismatch::Key { key: "bInterfaceNumber", .. })
        ));
    }
}
