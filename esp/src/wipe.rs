//! [`Wiped`]: a holder that zeroes a key type's bytes after dropping it, for the keys
//! (ring's AEAD and HMAC keys, RustCrypto's keyed HMAC-SHA1) that offer no zeroization
//! of their own.

use core::mem::{ManuallyDrop, MaybeUninit};
use core::ops::Deref;

/// Owns a `T` and overwrites its bytes with zeroes once it has been dropped.
///
/// Only the bytes `T` holds inline are wiped, so it is used for types that keep their
/// whole secret inline: ring 0.17's `aead::LessSafeKey` (the AES or ChaCha key schedule
/// next to a `&'static Algorithm`), `hmac::Key` (the inner and outer digest states,
/// each next to a `&'static Algorithm`) and RustCrypto's `Hmac<Sha1>` (two SHA-1
/// states and a block buffer). None owns heap memory.
pub(crate) struct Wiped<T>(ManuallyDrop<T>);

impl<T> Wiped<T> {
    /// Takes ownership of `value`.
    pub(crate) fn new(value: T) -> Self {
        Wiped(ManuallyDrop::new(value))
    }
}

impl<T> Deref for Wiped<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

// The crate's one unsafe block.
#[allow(unsafe_code)]
impl<T> Drop for Wiped<T> {
    fn drop(&mut self) {
        let slot: *mut ManuallyDrop<T> = &mut self.0;
        // SAFETY: `self.0` is dropped exactly once, here, and never touched again: the
        // `Wiped` is being dropped and `ManuallyDrop` has no drop glue of its own. After
        // that drop the bytes are dead; we wipe them as a `MaybeUninit<T>`: all-zero is a
        // valid `MaybeUninit` (it has no validity invariant), so a zeroed `&'static`
        // inside is never observed as a reference. `ManuallyDrop<T>` and `MaybeUninit<T>`
        // both have `T`'s layout.
        unsafe {
            ManuallyDrop::drop(&mut *slot);
            zeroize::zeroize_flat_type(slot.cast::<MaybeUninit<T>>());
        }
    }
}
