/* train_cmd.c */
