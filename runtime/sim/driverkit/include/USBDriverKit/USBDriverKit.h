// The USBDriverKit umbrella header, as a dext includes it:
// #include <USBDriverKit/USBDriverKit.h>
#ifndef DEXTLINK_USBDRIVERKIT_USBDRIVERKIT_H
#define DEXTLINK_USBDRIVERKIT_USBDRIVERKIT_H

#include <USBDriverKit/AppleUSBDefinitions.h>
#include <USBDriverKit/IOUSBHostDevice.h>
#include <USBDriverKit/IOUSBHostFamilyDefinitions.h>
#include <USBDriverKit/IOUSBHostInterface.h>
#include <USBDriverKit/IOUSBHostPipe.h>
#include <USBDriverKit/USBDriverKitDefs.h>

#endif
