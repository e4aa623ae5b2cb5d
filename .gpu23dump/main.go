package main

import (
	"fmt"
	"os"

	"gitee.com/gidean/conv-linn/artifact"
)

func main() {
	a, err := artifact.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	for _, p := range a.Programs {
		hist := map[string]int{}
		for _, st := range p.Steps {
			k := fmt.Sprintf("%d×%d s%d", st.Grid, st.Block, st.ScratchBytes)
			hist[k]++
			if len(os.Args) > 2 && os.Args[2] == p.Name {
				fmt.Println(st.Kernel, st.Grid, st.Block, st.ScratchBytes, st.Args)
			}
		}
		fmt.Println(p.Name, len(p.Steps), len(hist))
		if len(os.Args) == 2 {
			for k, v := range hist {
				fmt.Println("   ", k, v)
			}
		}
	}
}

func init() {
	if len(os.Args) > 3 && os.Args[3] == "slots" {
		a, _ := artifact.ReadFile(os.Args[1])
		p := a.Program(os.Args[2])
		for i, s := range p.Slots {
			fmt.Println(i, s.Name, s.Type, s.Kind, s.Offset)
		}
		os.Exit(0)
	}
}
