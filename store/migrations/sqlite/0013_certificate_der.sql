-- The certificate itself (DER), kept from now on for every certificate the CA issues, so the
-- controller's attestation of a wipe can show the device certificate that certifies the
-- signing key (and check it under the CA rather than trust a row). NULL: issued before.
ALTER TABLE certificates ADD COLUMN der BLOB;
