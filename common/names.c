/* snbd: protocol names for logs.  Generated from the same constants as
 * protocol.h, so a table cannot drift from it: each entry names the macro. */
#include "snbd/protocol.h"

#define NAME(x) case x: return #x

const char *nbd_opt_name(uint32_t opt)
{
  switch (opt) {
  NAME(NBD_OPT_EXPORT_NAME); NAME(NBD_OPT_ABORT); NAME(NBD_OPT_LIST);
  NAME(NBD_OPT_PEEK_EXPORT); NAME(NBD_OPT_STARTTLS); NAME(NBD_OPT_INFO);
  NAME(NBD_OPT_GO); NAME(NBD_OPT_STRUCTURED_REPLY);
  NAME(NBD_OPT_LIST_META_CONTEXT); NAME(NBD_OPT_SET_META_CONTEXT);
  NAME(NBD_OPT_EXTENDED_HEADERS);
  default: return "unknown option";
  }
}

const char *nbd_rep_name(uint32_t rep)
{
  switch (rep) {
  NAME(NBD_REP_ACK); NAME(NBD_REP_SERVER); NAME(NBD_REP_INFO);
  NAME(NBD_REP_META_CONTEXT); NAME(NBD_REP_ERR_UNSUP);
  NAME(NBD_REP_ERR_POLICY); NAME(NBD_REP_ERR_INVALID);
  NAME(NBD_REP_ERR_PLATFORM); NAME(NBD_REP_ERR_TLS_REQD);
  NAME(NBD_REP_ERR_UNKNOWN); NAME(NBD_REP_ERR_SHUTDOWN);
  NAME(NBD_REP_ERR_BLOCK_SIZE_REQD); NAME(NBD_REP_ERR_TOO_BIG);
  NAME(NBD_REP_ERR_EXT_HEADER_REQD);
  default: return "unknown reply";
  }
}

const char *nbd_cmd_name(uint16_t cmd)
{
  switch (cmd) {
  NAME(NBD_CMD_READ); NAME(NBD_CMD_WRITE); NAME(NBD_CMD_DISC);
  NAME(NBD_CMD_FLUSH); NAME(NBD_CMD_TRIM); NAME(NBD_CMD_CACHE);
  NAME(NBD_CMD_WRITE_ZEROES); NAME(NBD_CMD_BLOCK_STATUS);
  NAME(NBD_CMD_RESIZE);
  default: return "unknown command";
  }
}

const char *nbd_reply_type_name(uint16_t type)
{
  switch (type) {
  NAME(NBD_REPLY_TYPE_NONE); NAME(NBD_REPLY_TYPE_OFFSET_DATA);
  NAME(NBD_REPLY_TYPE_OFFSET_HOLE); NAME(NBD_REPLY_TYPE_BLOCK_STATUS);
  NAME(NBD_REPLY_TYPE_BLOCK_STATUS_EXT); NAME(NBD_REPLY_TYPE_ERROR);
  NAME(NBD_REPLY_TYPE_ERROR_OFFSET);
  default: return "unknown reply type";
  }
}

const char *nbd_err_name(uint32_t err)
{
  switch (err) {
  NAME(NBD_SUCCESS); NAME(NBD_EPERM); NAME(NBD_EIO); NAME(NBD_ENOMEM);
  NAME(NBD_EINVAL); NAME(NBD_ENOSPC); NAME(NBD_EOVERFLOW);
  NAME(NBD_ENOTSUP); NAME(NBD_ESHUTDOWN);
  default: return "unknown error";
  }
}
