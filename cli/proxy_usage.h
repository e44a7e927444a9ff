/* The text of imaptap proxy --help. */
#ifndef CLI_PROXY_USAGE_H
#define CLI_PROXY_USAGE_H

extern const char cli_proxy_usage[];

#endif
