//! Just enough ELF reading to pull the `.modinfo` section out of an uncompressed kernel module
//! (`.ko`): 32- and 64-bit, either byte order, every offset bounds-checked.

/// The `key=value` strings of a module's `.modinfo` section, in file order.
pub(crate) fn modinfo(file: &[u8]) -> Result<Vec<(String, String)>, String> {
    let section = section(file, ".modinfo")?.ok_or("the module has no .modinfo section")?;
    Ok(section
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let text = String::from_utf8_lossy(s);
            let (key, value) = text.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect())
}

struct Reader<'a> {
    file: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], String> {
        at.checked_add(N)
            .and_then(|end| self.file.get(at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| format!("truncated ELF file (reading {N} bytes at {at})"))
    }

    fn u16(&self, at: usize) -> Result<usize, String> {
        let b = self.bytes::<2>(at)?;
        Ok(usize::from(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }))
    }

    fn u32(&self, at: usize) -> Result<usize, String> {
        let b = self.bytes::<4>(at)?;
        let value = if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        };
        usize::try_from(value).map_err(|e| e.to_string())
    }

    fn u64(&self, at: usize) -> Result<usize, String> {
        let b = self.bytes::<8>(at)?;
        let value = if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        };
        usize::try_from(value).map_err(|e| e.to_string())
    }
}

/// The contents of the section called `wanted`, if there is one.
fn section<'a>(file: &'a [u8], wanted: &str) -> Result<Option<&'a [u8]>, String> {
    if file.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    let wide = match file.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err("unknown ELF class".into()),
    };
    let little = match file.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err("unknown ELF byte order".into()),
    };
    let r = Reader { file, little };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (r.u64(0x28)?, r.u16(0x3a)?, r.u16(0x3c)?, r.u16(0x3e)?)
    } else {
        (r.u32(0x20)?, r.u16(0x2e)?, r.u16(0x30)?, r.u16(0x32)?)
    };
    let min_entry = if wide { 64 } else { 40 };
    if shnum == 0 || shentsize < min_entry || shstrndx >= shnum {
        return Err("ELF section table is missing or uses extended numbering".into());
    }
    // (name offset, data offset, size) of section `index`.
    let header = |index: usize| -> Result<(usize, usize, usize), String> {
        let at = index
            .checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or("section header offset overflows")?;
        if wide {
            Ok((r.u32(at)?, r.u64(at + 24)?, r.u64(at + 32)?))
        } else {
            Ok((r.u32(at)?, r.u32(at + 16)?, r.u32(at + 20)?))
        }
    };
    let contents = |offset: usize, size: usize| {
        offset
            .checked_add(size)
            .and_then(|end| file.get(offset..end))
            .ok_or_else(|| "ELF section lies outside the file".to_owned())
    };
    let (_, names_offset, names_size) = header(shstrndx)?;
    let names = contents(names_offset, names_size)?;
    for index in 0..shnum {
        let (name, offset, size) = header(index)?;
        let name = names
            .get(name..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .ok_or("ELF section name lies outside the name table")?;
        if name == wanted.as_bytes() {
            return contents(offset, size).map(Some);
        }
    }
    Ok(None)
}

/// Builds a minimal relocatable ELF64 little-endian file with one `.modinfo` section, for
/// tests of this module and of module resolution.
#[cfg(test)]
pub(crate) fn fake_module(modinfo: &[&str]) -> Vec<u8> {
    let mut info = Vec::new();
    for entry in modinfo {
        info.extend_from_slice(entry.as_bytes());
        info.push(0);
    }
    let names = b"\0.modinfo\0.shstrtab\0";
    let info_offset = 64;
    let names_offset = info_offset + info.len();
    let shoff = (names_offset + names.len()).next_multiple_of(8);
    let mut file = vec![0u8; 64];
    file[..4].copy_from_slice(b"\x7fELF");
    file[4] = 2; // 64-bit
    file[5] = 1; // little-endian
    file[6] = 1; // version
    file[16] = 1; // ET_REL
    file[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    file[0x34] = 64; // e_ehsize
    file[0x3a] = 64; // e_shentsize
    file[0x3c] = 3; // e_shnum
    file[0x3e] = 2; // e_shstrndx
    file.extend_from_slice(&info);
    file.extend_from_slice(names);
    file.resize(shoff, 0);
    let section = |name: u32, kind: u32, offset: usize, size: usize| {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(&name.to_le_bytes());
        h[4..8].copy_from_slice(&kind.to_le_bytes());
        h[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
        h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        h
    };
    file.extend(section(0, 0, 0, 0));
    file.extend(section(1, 1, info_offset, info.len()));
    file.extend(section(10, 3, names_offset, names.len()));
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_modinfo_entries() {
        let module = fake_module(&[
            "license=GPL",
            "depends=virtio,virtio_ring",
            "name=virtio_net",
        ]);
        let info = modinfo(&module).unwrap();
        assert_eq!(
            info,
            [
                ("license".to_owned(), "GPL".to_owned()),
                ("depends".to_owned(), "virtio,virtio_ring".to_owned()),
                ("name".to_owned(), "virtio_net".to_owned()),
            ]
        );
    }

    #[test]
    fn refuses_damaged_files() {
        assert!(modinfo(b"MZ not elf").unwrap_err().contains("not an ELF"));
        let module = fake_module(&["depends="]);
        for cut in [8, 0x30, module.len() - 30] {
            assert!(modinfo(&module[..cut]).is_err(), "{cut}");
        }
        let mut far = module.clone();
        far[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(modinfo(&far).is_err());
    }
}
