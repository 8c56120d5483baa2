/* Generated per dextlink's iig contract (IIG.md) from TestDriver.iig; written by hand. */
#ifndef _TESTDRIVER_H
#define _TESTDRIVER_H

#include <DriverKit/IOService.h>

#define TestDriver_Start_Args IOService_Start_Args
#define TestDriver_Stop_Args IOService_Stop_Args
#define TestDriver_NewUserClient_Args IOService_NewUserClient_Args

struct TestDriver_IVars;
struct TestDriver_LocalIVars;

class TestDriver : public IOService {
    OSDeclareDefaultStructors(TestDriver)

public:
    union {
        TestDriver_IVars* ivars;
        TestDriver_LocalIVars* lvars;
    };

    using super = IOService;

    bool init() override;
    void free() override;

protected:
    kern_return_t Start_Impl(TestDriver_Start_Args);
    kern_return_t Stop_Impl(TestDriver_Stop_Args);
    kern_return_t NewUserClient_Impl(TestDriver_NewUserClient_Args);
};

#endif /* _TESTDRIVER_H */
