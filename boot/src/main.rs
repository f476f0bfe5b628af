fn main() {
    println!("bios: {}", env!("BIOS_PATH"));
    println!("uefi: {}", env!("UEFI_PATH"));
}
