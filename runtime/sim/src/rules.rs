//! DriverKit's dispatch rules for the C++ runtime: its
//! `IOUserClient::ExternalMethod` calls [`dextlink_driverkit_check_dispatch`]
//! so that a C++ dext and a Rust model are held to the same checks
//! (`dextlink::server::check_dispatch`, docs/driverkit.md §2.2).

use dextlink::server::{CallShape, DispatchChecks, check_dispatch};

/// `IOUserClientMethodDispatch`'s check fields, as the C++ side passes them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DispatchChecksC {
    pub completion_exists: u32,
    pub scalar_input_count: u32,
    pub structure_input_size: u32,
    pub scalar_output_count: u32,
    pub structure_output_size: u32,
}

/// The call's shape, as the C++ side passes it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CallShapeC {
    pub has_completion: u32,
    pub scalar_input_count: u64,
    pub structure_input_length: u64,
    pub scalar_output_count: u64,
    pub structure_output_maximum_size: u64,
}

/// `kIOReturnSuccess` when the entry's function may run, else the error the
/// base `ExternalMethod` returns. `checks` NULL means no dispatch entry.
///
/// # Safety
///
/// `checks` is NULL or points to a valid [`DispatchChecksC`]; `shape` points
/// to a valid [`CallShapeC`] (a NULL `shape` is refused with
/// `kIOReturnBadArgument`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dextlink_driverkit_check_dispatch(
    checks: *const DispatchChecksC,
    shape: *const CallShapeC,
) -> i32 {
    // SAFETY: the caller passes NULL or a pointer to a live struct of this
    // layout (the C++ runtime passes the address of a local).
    let Some(shape) = (unsafe { shape.as_ref() }) else {
        return dextlink::IoReturn::BAD_ARGUMENT.0;
    };
    // SAFETY: as above.
    let checks = unsafe { checks.as_ref() }.map(|c| DispatchChecks {
        completion_exists: c.completion_exists,
        scalar_input_count: c.scalar_input_count,
        structure_input_size: c.structure_input_size,
        scalar_output_count: c.scalar_output_count,
        structure_output_size: c.structure_output_size,
    });
    let shape = CallShape {
        has_completion: shape.has_completion != 0,
        scalar_input_count: shape.scalar_input_count,
        structure_input_length: shape.structure_input_length,
        scalar_output_count: shape.scalar_output_count,
        structure_output_maximum_size: shape.structure_output_maximum_size,
    };
    match check_dispatch(checks.as_ref(), &shape) {
        Ok(()) => dextlink::IoReturn::SUCCESS.0,
        Err(code) => code.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dextlink::IoReturn;

    const ONE_SCALAR: DispatchChecksC = DispatchChecksC {
        completion_exists: 0,
        scalar_input_count: 1,
        structure_input_size: 0,
        scalar_output_count: 0,
        structure_output_size: 0xffff_ffff,
    };

    fn shape(scalars: u64, has_completion: u32) -> CallShapeC {
        CallShapeC {
            has_completion,
            scalar_input_count: scalars,
            structure_input_length: 0,
            scalar_output_count: 0,
            structure_output_maximum_size: 4096,
        }
    }

    fn check(checks: Option<&DispatchChecksC>, shape: Option<&CallShapeC>) -> IoReturn {
        let checks = checks.map_or(std::ptr::null(), |c| c as *const _);
        let shape = shape.map_or(std::ptr::null(), |s| s as *const _);
        // SAFETY: NULL or pointers to live locals, as the C++ side passes them.
        IoReturn(unsafe { dextlink_driverkit_check_dispatch(checks, shape) })
    }

    #[test]
    fn the_c_entry_point_applies_the_rust_rules() {
        assert_eq!(check(Some(&ONE_SCALAR), Some(&shape(1, 0))), IoReturn::SUCCESS);
        assert_eq!(check(Some(&ONE_SCALAR), Some(&shape(2, 0))), IoReturn::BAD_ARGUMENT);
        assert_eq!(check(Some(&ONE_SCALAR), Some(&shape(1, 1))), IoReturn::BAD_ARGUMENT);
        assert_eq!(check(None, Some(&shape(1, 0))), IoReturn::UNSUPPORTED);
        assert_eq!(check(Some(&ONE_SCALAR), None), IoReturn::BAD_ARGUMENT);
    }
}
